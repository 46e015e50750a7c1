// The throwaway PostgreSQL the cluster tests use (issue 16): it starts on a free loopback
// port as the postgres user, @effect/sql-pg talks to it, pg_dump reads every table back
// (how the secrets test will grep for key bytes), and stop leaves nothing behind.
import { PgClient } from "@effect/sql-pg"
import { Effect } from "effect"
import { SqlClient } from "effect/sql"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Postgres, startPostgres } from "../src/Postgres.js"

let pg: Postgres
beforeAll(async () => {
  pg = await startPostgres()
}, 60_000)
afterAll(() => pg?.stop())

const layer = () => PgClient.layer({ host: pg.host, port: pg.port, username: pg.username, database: pg.database })

describe("a throwaway PostgreSQL", () => {
  it("serves SQL through @effect/sql-pg on 127.0.0.1, and pg_dump shows every row", async () => {
    const rows = await Effect.runPromise(Effect.gen(function*() {
      const sql = yield* SqlClient.SqlClient
      yield* sql`create table segments (job text, segment int, state text)`
      yield* sql`insert into segments values ('job-1', 0, 'done'), ('job-1', 1, 'running')`
      return yield* sql<{ segment: number; state: string }>`select segment, state from segments order by segment`
    }).pipe(Effect.provide(layer())))
    expect(rows.map((r) => [r.segment, r.state])).toEqual([[0, "done"], [1, "running"]])
    const dump = pg.run("pg_dump", ["-h", pg.host, "-p", String(pg.port), "-U", pg.username, "--data-only", pg.database])
    expect(dump).toContain("job-1\t1\trunning")
  })

  it("listens on loopback only, and stop removes it", async () => {
    const probe = (host: string, port: number) =>
      new Promise<boolean>((resolve) => {
        const s = net.connect({ host, port }, () => {
          s.destroy()
          resolve(true)
        })
        s.once("error", () => resolve(false))
      })
    expect(await probe("127.0.0.1", pg.port)).toBe(true)
    // Any other address of this machine is refused.
    const external = Object.values(os.networkInterfaces()).flat().find((a) => a !== undefined && a.family === "IPv4" && !a.internal)
    if (external !== undefined) expect(await probe(external.address, pg.port)).toBe(false)
    const other = await startPostgres()
    const { dataDir, port } = other
    expect(await probe("127.0.0.1", port)).toBe(true)
    other.stop()
    expect(fs.existsSync(dataDir)).toBe(false)
    expect(await probe("127.0.0.1", port)).toBe(false)
  }, 60_000)
})
