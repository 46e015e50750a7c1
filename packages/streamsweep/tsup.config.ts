import { library } from "../../tooling/tsup/library.js"

// `Validator` is also its own entry (`@cage/streamsweep/validator`): no Effect runtime, no engine.
export default library(["src/index.ts", "src/Validator.ts"])
