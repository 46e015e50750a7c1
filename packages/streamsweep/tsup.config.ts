import { defineConfig } from "tsup"

export default defineConfig({
  // `Validator` is also its own entry (`@cage/streamsweep/validator`): no Effect runtime, no engine.
  entry: ["src/index.ts", "src/Validator.ts"],
  format: ["esm"],
  dts: true,
  sourcemap: true,
  clean: true,
  target: "node20"
})
