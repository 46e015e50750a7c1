// A throwaway PostgreSQL for trying `cage cluster` by hand (issue 16): `node scripts/postgres.mjs`
// starts Debian's server (installed by scripts/setup.sh) in a temp directory on a free
// loopback port, prints the `--db` URL to give every `cage cluster` command, and on Ctrl-C
// stops it and removes its directory. Trust authentication on 127.0.0.1 only: not for real data.
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)))
const { Postgres } = await import(path.join(root, "packages/cluster/dist/index.js"))
const pg = await Postgres.startPostgres()
process.stdout.write(`postgres://${pg.username}@${pg.host}:${pg.port}/${pg.database}\n`)
process.stderr.write("PostgreSQL is running; Ctrl-C stops it and removes its data\n")
const stop = () => {
  pg.stop()
  process.exit(0)
}
process.on("SIGINT", stop)
process.on("SIGTERM", stop)
setInterval(() => undefined, 1 << 30)
