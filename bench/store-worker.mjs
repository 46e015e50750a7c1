// One chunk-store backup in its own process, for bench/store.mjs (timed and RSS-measured
// like a command). Usage: node bench/store-worker.mjs STORE_DIR KEY_FILE SOURCE
import * as fs from "node:fs"
import * as path from "node:path"

const [dir, keyFile, source] = process.argv.slice(2)
const root = path.resolve(new URL("..", import.meta.url).pathname)
const pkg = path.join(root, "packages/backup")
const { Store } = await import(path.join(pkg, "dist/index.js"))
const { Effect } = await import(path.join(pkg, "node_modules/effect/dist/index.js"))
const key = Buffer.from(/cage-key-1:(\S+)/.exec(fs.readFileSync(keyFile, "utf8"))[1], "base64url")
const summary = await Effect.runPromise(Effect.gen(function*() {
  const store = yield* Store.open({ dir, key: { key } })
  return yield* Store.backup(store, { source })
}))
process.stdout.write(`${JSON.stringify(summary)}\n`)
