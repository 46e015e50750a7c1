/**
 * A throwaway PostgreSQL for the tests (issue 16: real storage, no mocks): Debian's server
 * binaries, `initdb` into a temporary directory and `pg_ctl start` on a free loopback port,
 * as the `postgres` user when the tests run as root (PostgreSQL refuses root). Trust
 * authentication on 127.0.0.1 only; the socket lives in the data directory. `stop()` shuts
 * it down at once and removes the directory.
 *
 * For tests and the demo, and for trying a cluster by hand (`startPostgres()` from a
 * script); not a way to run a production database.
 */
import { spawnSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

/** The server binaries: Debian's `postgresql` package puts them off PATH, under its major version. */
export const binDir = (): string | undefined => {
  const root = "/usr/lib/postgresql"
  if (!fs.existsSync(root)) return undefined
  const versions = fs.readdirSync(root).filter((v) => fs.existsSync(path.join(root, v, "bin", "initdb"))).sort((a, b) => Number(b) - Number(a))
  return versions.length > 0 ? path.join(root, versions[0], "bin") : undefined
}

/** A free TCP port on 127.0.0.1 (the kernel's choice; released before the caller takes it: a server, a runner). */
export const freePort = () =>
  new Promise<number>((resolve, reject) => {
    const s = net.createServer()
    s.once("error", reject)
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port
      s.close(() => resolve(port))
    })
  })

export interface Postgres {
  readonly host: string
  readonly port: number
  readonly username: string
  readonly database: string
  readonly dataDir: string
  /** The path of one of the server's tools (`pg_dump`, to grep a dump of every table). */
  readonly bin: (name: string) => string
  /** Runs a server tool as the server's user; returns its stdout (throws on failure). */
  readonly run: (name: string, args: ReadonlyArray<string>) => string
  /** Stops the server at once (as a crash would), waits `downMs`, and starts it again on the same port with the same data. */
  readonly restart: (downMs: number) => Promise<void>
  readonly stop: () => void
}

/** Starts a throwaway server; throws, naming the step, when PostgreSQL is not installed or does not start. */
export const startPostgres = async (): Promise<Postgres> => {
  const bin = binDir()
  if (bin === undefined) throw new Error("PostgreSQL is not installed (bash scripts/setup.sh installs Debian's postgresql)")
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "cage-pg-"))
  const dataDir = path.join(root, "data")
  const asRoot = process.getuid?.() === 0
  if (asRoot) {
    const id = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" })
    const uid = Number(id.stdout.trim())
    const gid = Number(spawnSync("id", ["-g", "postgres"], { encoding: "utf8" }).stdout.trim())
    if (id.status !== 0 || !Number.isInteger(uid)) throw new Error("running as root, but there is no postgres user to run the server as")
    fs.chownSync(root, uid, gid)
  }
  const run = (name: string, args: ReadonlyArray<string>) => {
    const argv = asRoot ? ["runuser", "-u", "postgres", "--", path.join(bin, name), ...args] : [path.join(bin, name), ...args]
    const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8", cwd: root })
    if (r.status !== 0) throw new Error(`${name} failed (${r.status}): ${r.stderr.trim() || r.stdout.trim()}`)
    return r.stdout
  }
  run("initdb", ["-D", dataDir, "-A", "trust", "-U", "cage", "--no-sync"])
  const port = await freePort()
  const start = () => run("pg_ctl", ["-D", dataDir, "-o", `-k ${dataDir} -p ${port} -c listen_addresses=127.0.0.1 -c fsync=off`, "-l", path.join(root, "server.log"), "-w", "start"])
  start()
  const restart = async (downMs: number) => {
    run("pg_ctl", ["-D", dataDir, "-m", "immediate", "-w", "stop"])
    await new Promise((resolve) => setTimeout(resolve, downMs))
    start()
  }
  const stop = () => {
    try {
      run("pg_ctl", ["-D", dataDir, "-m", "immediate", "-w", "stop"])
    } finally {
      fs.rmSync(root, { recursive: true, force: true })
    }
  }
  return { host: "127.0.0.1", port, username: "cage", database: "postgres", dataDir, bin: (n) => path.join(bin, n), run, restart, stop }
}
