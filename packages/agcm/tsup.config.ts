import { library } from "../../tooling/tsup/library.js"

// The segment worker is its own entry: the pool starts dist/worker.js (src/internal/pool.ts).
export default library({ index: "src/index.ts", worker: "src/internal/worker.ts" })
