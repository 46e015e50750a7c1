import { library } from "../../tooling/tsup/library.js"

// `internal/hashPool` is also built on its own (`dist/internal/hashPool.js`, hidden by
// `exports`) so the root benchmark can time the pool without it being public API.
export default library(["src/index.ts", "src/internal/hashPool.ts"])
