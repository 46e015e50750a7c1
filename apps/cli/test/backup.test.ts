import * as crypto from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { cage, tempDir, writeRandom } from "./helpers.js"

let dir: string
const f = (name: string) => path.join(dir, name)
const env = () => ({ XDG_CONFIG_HOME: f("xdg"), CAGE_CONFIG: "" })
const run = (args: ReadonlyArray<string>) => cage(args, { cwd: dir, env: env() })
beforeEach(() => {
  dir = tempDir()
  expect(run(["keygen", "-q", "-o", "k.key"]).code).toBe(0)
})
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }))

describe("cage backup and cage audit", () => {
  it("full copies (--copy): create, verify, damage one chunk, verify names it (exit 3), restore a clean range, audit summary", () => {
    writeRandom(f("data.bin"), 300_000)
    const create = run(["backup", "create", "--copy", "-q", "--key", "k.key", "--manifest", "--chunk-size", "16KiB", "--audit-log", "audit.jsonl", "data.bin"])
    expect(create.code).toBe(0)
    expect(run(["backup", "verify", "-q", "data.bin"]).code).toBe(0)
    expect(run(["backup", "list", "--json", "data.bin"]).stdout.toString()).toContain("complete")
    const file = fs.readdirSync(f(".cage-backups")).find((n) => n.endsWith(".cage"))!
    const backup = f(`.cage-backups/${file}`)
    const bytes = fs.readFileSync(backup)
    // chunk 5 of 16 KiB chunks: header (66 bytes) + 5 sealed chunks of 16 KiB + 16
    bytes[66 + 5 * (16384 + 16) + 1000] ^= 0x40
    fs.writeFileSync(backup, bytes)
    const verify = run(["backup", "verify", "--json", "data.bin"])
    expect(verify.code).toBe(3)
    const report = JSON.parse(verify.stdout.toString())
    expect(JSON.stringify(report)).toMatch(/"(chunk|index)":5\b/)
    expect(JSON.stringify(report)).not.toMatch(/"(chunk|index)":4\b/)
    const ok = run(["backup", "restore", "-q", "--key", "k.key", "--range", "0:50000", "-o", "part.bin", "data.bin"])
    expect(ok.code).toBe(0)
    expect(fs.readFileSync(f("part.bin")).equals(fs.readFileSync(f("data.bin")).subarray(0, 50000))).toBe(true)
    const bad = run(["backup", "restore", "--key", "k.key", "-o", "all.bin", "data.bin"])
    expect(bad.code).toBe(3)
    expect(fs.existsSync(f("all.bin"))).toBe(false)
    const summary = run(["audit", "summary", "--json", "audit.jsonl"])
    expect(summary.code).toBe(0)
    const audit = fs.readFileSync(f("audit.jsonl"), "utf8")
    expect(audit).toContain("run_start")
    expect(audit).not.toContain(fs.readFileSync(f("k.key"), "utf8").split("\n")[1].slice("cage-key-1:".length))
  })
  it("recover rebuilds a lost registry of full copies from their manifests, counting its generations", () => {
    writeRandom(f("data.bin"), 50_000)
    expect(run(["backup", "create", "--copy", "-q", "--key", "k.key", "--manifest", "data.bin"]).code).toBe(0)
    fs.rmSync(f(".cage-backups/.cage_backups.json"))
    const one = run(["backup", "recover", "--key", "k.key"])
    expect([one.code, one.stderr]).toEqual([0, "cage: rebuilt the registry: 1 generation (1 from manifests, 0 partial from .bak)\n"])
    expect(run(["backup", "create", "--copy", "-q", "--key", "k.key", "--manifest", "data.bin"]).code).toBe(0)
    fs.rmSync(f(".cage-backups/.cage_backups.json"))
    expect(run(["backup", "recover", "--key", "k.key"]).stderr).toBe("cage: rebuilt the registry: 2 generations (2 from manifests, 0 partial from .bak)\n")
    expect(run(["backup", "verify", "-q", "data.bin"]).code).toBe(0)
  })

  it("encrypt --audit-log records the run without key material", () => {
    writeRandom(f("in"), 200_000)
    expect(run(["encrypt", "-q", "--key", "k.key", "--audit-log", "a.jsonl", "in"]).code).toBe(0)
    const lines = fs.readFileSync(f("a.jsonl"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
    expect(lines[0]).toMatchObject({ type: "run_start", operation: "encrypt" })
    expect(lines.at(-1)).toMatchObject({ type: "run_complete" })
    expect(fs.statSync(f("a.jsonl")).mode & 0o777).toBe(0o600)
  })

  it("the chunk store: generations of a file store only new chunks, a directory restores whole or by path, list shows what each added, and -o - writes to standard output", () => {
    // Seeded bytes: the chunk cuts, and so the bytes an edit adds, are the same on every run.
    fs.writeFileSync(f("db.dump"), crypto.createCipheriv("aes-256-ctr", Buffer.alloc(32, 1), Buffer.alloc(16)).update(Buffer.alloc(8 * 1024 * 1024)))
    const first = run(["backup", "create", "--json", "--key", "k.key", "db.dump"])
    expect(first.code, first.stderr).toBe(0)
    expect(JSON.parse(first.stdout.toString())).toMatchObject({ format: "store", generation: 1, unchanged: false, bytes: 8 * 1024 * 1024 })
    // Unchanged: not read. Then 64 KiB overwritten in the middle: only the chunks around it are new.
    expect(JSON.parse(run(["backup", "create", "--json", "--key", "k.key", "db.dump"]).stdout.toString())).toMatchObject({ generation: 2, unchanged: true, addedBytes: 0 })
    const data = fs.readFileSync(f("db.dump"))
    const v1 = Buffer.from(data)
    data.fill(7, 4_000_000, 4_000_000 + 65536)
    fs.writeFileSync(f("db.dump"), data)
    const third = JSON.parse(run(["backup", "create", "--json", "--key", "k.key", "db.dump"]).stdout.toString())
    expect(third.generation).toBe(3)
    expect(third.addedBytes).toBeGreaterThan(0)
    expect(third.addedBytes).toBeLessThan(4 * 1024 * 1024)
    // A directory: files, an empty directory, a symlink.
    fs.mkdirSync(f("site/empty"), { recursive: true })
    fs.mkdirSync(f("site/conf"))
    fs.writeFileSync(f("site/conf/app.toml"), "port = 80\n")
    fs.writeFileSync(f("site/index.html"), "<p>hi</p>\n")
    fs.symlinkSync("conf/app.toml", f("site/current"))
    const tree = JSON.parse(run(["backup", "create", "--json", "--key", "k.key", "site"]).stdout.toString())
    expect(tree).toMatchObject({ generation: 1, files: 2, filesRead: 2 })
    const list = JSON.parse(run(["backup", "list", "--json", "--key", "k.key"]).stdout.toString()) as Array<{ source: string; generation: number; kind: string; added: { bytes: number }; files?: number }>
    expect(list.map((g) => [path.basename(g.source), g.generation, g.kind])).toEqual([["db.dump", 1, "file"], ["db.dump", 2, "file"], ["db.dump", 3, "file"], ["site", 1, "directory"]])
    expect(list[1].added.bytes).toBe(0)
    expect(list[3].files).toBe(2)
    const table = run(["backup", "list", "--key", "k.key", "db.dump"]).stdout.toString()
    expect(table).toMatch(/^3 +store +complete/m)
    // Restores: the newest, an older one by number, a range to standard output, the tree, one path of it.
    expect(run(["backup", "restore", "-q", "--key", "k.key", "-o", "now.bin", "db.dump"]).code).toBe(0)
    expect(fs.readFileSync(f("now.bin")).equals(data)).toBe(true)
    expect(run(["backup", "restore", "-q", "--key", "k.key", "-g", "1", "-o", "then.bin", "db.dump"]).code).toBe(0)
    expect(fs.readFileSync(f("then.bin")).equals(v1)).toBe(true)
    const piece = run(["backup", "restore", "-q", "--key", "k.key", "--range", "3999990:4000010", "-o", "-", "db.dump"])
    expect(piece.stdout.equals(data.subarray(3_999_990, 4_000_010))).toBe(true)
    expect(run(["backup", "restore", "-q", "--key", "k.key", "-o", "site2", "site"]).code).toBe(0)
    expect(fs.readFileSync(f("site2/conf/app.toml"), "utf8")).toBe("port = 80\n")
    expect(fs.readlinkSync(f("site2/current"))).toBe("conf/app.toml")
    expect(fs.statSync(f("site2/empty")).isDirectory()).toBe(true)
    expect(run(["backup", "restore", "-q", "--key", "k.key", "--path", "conf", "-o", "conf2", "site"]).code).toBe(0)
    expect(fs.readdirSync(f("conf2"))).toEqual(["app.toml"])
    // The source itself is never the target of --force.
    const clobber = run(["backup", "restore", "--force", "--key", "k.key", "db.dump"])
    expect(clobber.code).toBe(2)
    expect(clobber.stderr).toContain("-o db.dump is the backed-up source itself")
    expect(fs.readFileSync(f("db.dump")).equals(data)).toBe(true)
    // Verify, whole store and one generation, deep.
    expect(run(["backup", "verify", "-q", "--deep", "--key", "k.key"]).code).toBe(0)
    expect(run(["backup", "verify", "-q", "--deep", "--key", "k.key", "-g", "1", "db.dump"]).code).toBe(0)
  })

  it("the chunk store refuses in the user's terms: another key, full-copy flags, standard input, a missing generation; a flipped pack byte is named with the generations and paths that use it", () => {
    writeRandom(f("a.bin"), 1024 * 1024)
    fs.mkdirSync(f("d"))
    fs.copyFileSync(f("a.bin"), f("d/copy.bin"))
    expect(run(["backup", "create", "-q", "--key", "k.key", "a.bin"]).code).toBe(0)
    expect(run(["backup", "create", "-q", "--key", "k.key", "d"]).code).toBe(0)
    expect(run(["keygen", "-q", "-o", "other.key"]).code).toBe(0)
    const other = run(["backup", "list", "--key", "other.key"])
    expect(other.code).toBe(3)
    expect(other.stderr).toBe("cage: error: other.key does not open the backup store in .cage-backups: this key does not open the store (another key, or its config.json was edited)\n")
    const flag = run(["backup", "create", "--key", "k.key", "--chunk-size", "64KiB", "a.bin"])
    expect(flag.code).toBe(2)
    expect(flag.stderr).toContain("--chunk-size applies to full copies: add --copy")
    const stdin = run(["backup", "create", "--key", "k.key", "-"])
    expect(stdin.code).toBe(2)
    expect(stdin.stderr).toContain("backup create - reads standard input: give --name NAME")
    const copyStdin = run(["backup", "create", "--copy", "--key", "k.key", "-", "--name", "x"])
    expect(copyStdin.code).toBe(2)
    expect(copyStdin.stderr).toContain("a full copy (--copy) reads a file, not standard input")
    // Never over a file the command reads, --force or not; never into the backup directory; no bytes to a --json stdout.
    const overKey = run(["backup", "restore", "--force", "--key", "k.key", "-o", "k.key", "a.bin"])
    expect(overKey.code).toBe(2)
    expect(overKey.stderr).toContain("refusing to write k.key: it is --key k.key, which this command reads")
    const intoDir = run(["backup", "restore", "--force", "--key", "k.key", "-o", ".cage-backups/config.json", "a.bin"])
    expect(intoDir.code).toBe(2)
    expect(intoDir.stderr).toContain("refusing to restore into the backup directory .cage-backups")
    expect(run(["backup", "restore", "--json", "--key", "k.key", "-o", "-", "a.bin"]).code).toBe(2)
    expect(run(["backup", "verify", "--key", "k.key", "-g", "1"]).stderr).toContain("--generation needs the source it numbers")
    const missing = run(["backup", "restore", "--key", "k.key", "-g", "9", "-o", "x", "a.bin"])
    expect(missing.code).toBe(2)
    expect(missing.stderr).toContain("no generation 9")
    expect(missing.stderr).toContain("has generations 1")
    // Flip one byte inside a pack's first blob.
    const packs = fs.readdirSync(f(".cage-backups/packs"), { recursive: true, withFileTypes: true }).filter((e) => e.isFile())
    expect(packs.length).toBeGreaterThan(0)
    const victim = path.join(packs[0].parentPath, packs[0].name)
    const bytes = fs.readFileSync(victim)
    bytes[200] ^= 1
    fs.writeFileSync(victim, bytes)
    expect(run(["backup", "verify", "-q", "--key", "k.key"]).code).toBe(0) // shallow: every chunk is indexed
    const deep = run(["backup", "verify", "--deep", "--key", "k.key", "--audit-log", "audit.jsonl"])
    expect(deep.code).toBe(3)
    const audited = JSON.parse(fs.readFileSync(f("audit.jsonl"), "utf8").trim().split("\n").at(-1)!)
    expect(audited).toMatchObject({ type: "verify", source: f(".cage-backups"), generation: null, ok: false, deep: true })
    expect(audited.damage[0]).toMatch(/^damaged chunk [0-9a-f]{16}: /)
    expect(run(["audit", "summary", "audit.jsonl"]).code).toBe(0)
    const out = deep.stdout.toString()
    expect(out).toMatch(/^damaged chunk [0-9a-f]{16}: pack [0-9a-f]{16}… chunk [0-9a-f]{16}… at byte \d+ is damaged: .*; used by generation 1 of \S+a\.bin, generation 1 of \S+\/d \(copy\.bin\)$/m)
    expect(deep.stderr).toContain("1 damaged or missing chunk")
    const json = JSON.parse(run(["backup", "verify", "--json", "--deep", "--key", "k.key"]).stdout.toString())
    expect(json).toMatchObject({ ok: false, format: "store" })
    expect(json.problems[0].uses.map((u: { path?: string }) => u.path ?? null)).toEqual([null, "copy.bin"])
    // A restore that needs the chunk publishes nothing.
    expect(run(["backup", "restore", "-q", "--key", "k.key", "-o", "r.bin", "a.bin"]).code).toBe(3)
    expect(fs.existsSync(f("r.bin"))).toBe(false)
  })

  it("a directory of 200 files from 0 bytes to 64 MiB, symlinks and empty directories restores identically (contents, modes, mtimes); unchanged files are not read again", () => {
    let x = 5
    const next = () => (x = (x * 1103515245 + 12345) >>> 0)
    const sizes = (i: number) => (i === 0 ? 0 : i === 1 ? 1 : i === 2 ? 64 * 1024 * 1024 : i % 40 === 3 ? 3 * 1024 * 1024 + (next() % 1000) : next() % 50_000)
    for (let i = 0; i < 200; i++) {
      const sub = f(`tree/d${i % 6}${i % 4 === 0 ? `/e${i % 3}` : ""}`)
      fs.mkdirSync(sub, { recursive: true })
      const file = path.join(sub, `f${i}`)
      writeRandom(file, sizes(i))
      fs.chmodSync(file, [0o644, 0o600, 0o755, 0o640][i % 4])
      fs.utimesSync(file, 1_700_000_000 + i, 1_700_000_000 + i * 13)
    }
    fs.mkdirSync(f("tree/empty/deeper"), { recursive: true })
    fs.symlinkSync("d1/f1", f("tree/link"))
    fs.symlinkSync("/nowhere", f("tree/dangling"))
    fs.utimesSync(f("tree/empty"), 1_600_000_000, 1_600_000_000)
    const describe = (root: string) => {
      const out: Array<string> = []
      const walk = (d: string, rel: string) => {
        for (const name of fs.readdirSync(d).sort()) {
          const full = path.join(d, name)
          const st = fs.lstatSync(full)
          const r = `${rel}/${name}`
          if (st.isSymbolicLink()) out.push(`${r} -> ${fs.readlinkSync(full)}`)
          else if (st.isDirectory()) {
            out.push(`${r}/ ${(st.mode & 0o7777).toString(8)} ${Math.floor(st.mtimeMs)}`)
            walk(full, r)
          } else out.push(`${r} ${(st.mode & 0o7777).toString(8)} ${Math.floor(st.mtimeMs)} ${crypto.createHash("sha256").update(fs.readFileSync(full)).digest("hex")}`)
        }
      }
      walk(root, "")
      return out
    }
    const want = describe(f("tree"))
    const first = JSON.parse(run(["backup", "create", "--json", "--key", "k.key", "tree"]).stdout.toString())
    expect(first).toMatchObject({ files: 200, filesRead: 200, changed: [], skipped: [] })
    const again = JSON.parse(run(["backup", "create", "--json", "--key", "k.key", "tree"]).stdout.toString())
    expect(again).toMatchObject({ generation: 2, files: 200, filesRead: 0, addedBytes: 0 })
    expect(run(["backup", "restore", "-q", "--key", "k.key", "-o", "back", "tree"]).code).toBe(0)
    expect(describe(f("back"))).toEqual(want)
  }, 120_000)

  it("standard input: generations under --name, only new chunks stored, restored byte for byte", () => {
    const dump = crypto.createCipheriv("aes-256-ctr", Buffer.alloc(32, 2), Buffer.alloc(16)).update(Buffer.alloc(6 * 1024 * 1024))
    const first = cage(["backup", "create", "--json", "--key", "k.key", "-", "--name", "db.sql"], { cwd: dir, env: env(), input: dump })
    expect(first.code, first.stderr).toBe(0)
    expect(JSON.parse(first.stdout.toString())).toMatchObject({ generation: 1, bytes: dump.length, addedBytes: dump.length })
    const edited = Buffer.from(dump)
    edited.fill(1, 3_000_000, 3_000_100)
    const second = JSON.parse(cage(["backup", "create", "--json", "--key", "k.key", "-", "--name", "db.sql"], { cwd: dir, env: env(), input: edited }).stdout.toString())
    expect(second.generation).toBe(2)
    expect(second.addedBytes).toBeLessThan(dump.length / 2)
    const list = JSON.parse(run(["backup", "list", "--json", "--key", "k.key", "db.sql"]).stdout.toString()) as Array<{ generation: number; bytes: number; source: string }>
    expect(list.map((g) => [g.generation, g.bytes, g.source])).toEqual([[1, dump.length, f("db.sql")], [2, dump.length, f("db.sql")]])
    expect(run(["backup", "restore", "-q", "--key", "k.key", "-g", "1", "-o", "one.sql", "db.sql"]).code).toBe(0)
    expect(fs.readFileSync(f("one.sql")).equals(dump)).toBe(true)
    const out = run(["backup", "restore", "-q", "--key", "k.key", "-o", "-", "db.sql"])
    expect(out.stdout.equals(edited)).toBe(true)
    const named = run(["backup", "create", "--key", "k.key", "--name", "x", "one.sql"])
    expect(named.code).toBe(2)
    expect(named.stderr).toContain("--name names standard input")
  })

  it("full copies and store generations of one source: numbered together, each restored from where it lives, and one retention policy over both (old copies age out)", () => {
    writeRandom(f("a.bin"), 200_000)
    const versions: Array<Buffer> = []
    for (const flags of [["--copy"], ["--copy"], [], []]) {
      writeRandom(f("a.bin"), 200_000)
      versions.push(fs.readFileSync(f("a.bin")))
      const r = run(["backup", "create", ...flags, "-q", "--key", "k.key", "a.bin"])
      expect(r.code, r.stderr).toBe(0)
    }
    const list = JSON.parse(run(["backup", "list", "--json", "--key", "k.key", "a.bin"]).stdout.toString()) as Array<{ generation: number; format: string }>
    expect(list.map((g) => [g.generation, g.format])).toEqual([[1, "copy"], [2, "copy"], [3, "store"], [4, "store"]])
    for (const g of [1, 2, 3, 4]) {
      expect(run(["backup", "restore", "-q", "--key", "k.key", "-g", String(g), "-o", `r${g}`, "a.bin"]).code).toBe(0)
      expect(fs.readFileSync(f(`r${g}`)).equals(versions[g - 1])).toBe(true)
    }
    // A full copy asked for by number verifies without the key; the newest (in the store) needs it.
    expect(run(["backup", "verify", "-q", "-g", "2", "a.bin"]).code).toBe(0)
    expect(run(["backup", "verify", "-q", "--key", "k.key", "a.bin"]).code).toBe(0)
    // A full copy after store generations is numbered after them.
    writeRandom(f("a.bin"), 200_000)
    versions.push(fs.readFileSync(f("a.bin")))
    expect(run(["backup", "create", "--copy", "-q", "--key", "k.key", "a.bin"]).code).toBe(0)
    expect(run(["backup", "restore", "-q", "--key", "k.key", "-o", "r5", "a.bin"]).code).toBe(0)
    expect(fs.readFileSync(f("r5")).equals(versions[4])).toBe(true)
    // keep_last:4 over both kinds: the oldest copy goes.
    expect((JSON.parse(run(["backup", "list", "--json", "--key", "k.key", "a.bin"]).stdout.toString()) as Array<{ generation: number; format: string }>).map((g) => [g.generation, g.format]))
      .toEqual([[1, "copy"], [2, "copy"], [3, "store"], [4, "store"], [5, "copy"]])
    expect(run(["backup", "prune", "-q", "--key", "k.key", "--policy", "keep_last:4", "a.bin"]).code).toBe(0)
    // keep_last:2 over both kinds: the two full copies go, although the newest copy verifies.
    const pruned = run(["backup", "prune", "--json", "--key", "k.key", "--policy", "keep_last:2"])
    expect(pruned.code, pruned.stderr).toBe(0)
    const report = JSON.parse(pruned.stdout.toString())
    expect(report.deleted.map((g: { generation: number }) => g.generation)).toEqual([2])
    expect(report.store.deleted.map((g: { generation: number }) => g.generation)).toEqual([3])
    expect((JSON.parse(run(["backup", "list", "--json", "--key", "k.key"]).stdout.toString()) as Array<{ generation: number }>).map((g) => g.generation)).toEqual([4, 5])
  })

  it("prune never takes the newest full copy that verifies when the newer store generation is damaged, nor packs a lost index no longer lists", () => {
    writeRandom(f("a.bin"), 300_000)
    expect(run(["backup", "create", "--copy", "-q", "--key", "k.key", "a.bin"]).code).toBe(0)
    writeRandom(f("a.bin"), 300_000)
    expect(run(["backup", "create", "-q", "--key", "k.key", "a.bin"]).code).toBe(0)
    // The store loses its index: generation 2's chunks are in no index.
    for (const n of fs.readdirSync(f(".cage-backups/index"))) fs.rmSync(f(`.cage-backups/index/${n}`))
    // The full copy is kept; the store's prune refuses to delete packs that may hold the lost chunks.
    const r = run(["backup", "prune", "--key", "k.key", "--policy", "keep_last:1"])
    expect(r.code).toBe(3)
    expect(r.stderr).toContain("in no index: run recover before prune")
    const list = JSON.parse(run(["backup", "list", "--json", "--key", "k.key"]).stdout.toString()) as Array<{ generation: number; format: string }>
    expect(list.map((g) => [g.generation, g.format])).toEqual([[1, "copy"], [2, "store"]])
    expect(run(["backup", "verify", "-q", "--key", "k.key", "-g", "2", "a.bin"]).code).toBe(3)
    // recover rebuilds the index from the packs: generation 2 is whole again, and prune goes on.
    expect(run(["backup", "recover", "-q", "--key", "k.key"]).code).toBe(0)
    expect(run(["backup", "verify", "-q", "--deep", "--key", "k.key", "-g", "2", "a.bin"]).code).toBe(0)
    const again = JSON.parse(run(["backup", "prune", "--json", "--key", "k.key", "--policy", "keep_last:1"]).stdout.toString())
    expect(again.deleted.map((g: { generation: number }) => g.generation)).toEqual([1])
    expect(run(["backup", "restore", "-q", "--key", "k.key", "-o", "back", "a.bin"]).code).toBe(0)
    expect(fs.readFileSync(f("back")).equals(fs.readFileSync(f("a.bin")))).toBe(true)
  })

  it("prune on the store: forgets by policy (never a source's newest), frees the chunks only those used, and a dry run changes nothing", () => {
    for (let g = 0; g < 4; g++) {
      writeRandom(f("a.bin"), 600_000)
      expect(run(["backup", "create", "-q", "--key", "k.key", "a.bin"]).code).toBe(0)
    }
    const packs = () => fs.readdirSync(f(".cage-backups/packs"), { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).length
    const before = packs()
    const dry = run(["backup", "prune", "--dry-run", "--json", "--key", "k.key", "--policy", "keep_last:2"])
    expect(dry.code, dry.stderr).toBe(0)
    expect(JSON.parse(dry.stdout.toString()).store.deleted.map((g: { generation: number }) => g.generation)).toEqual([1, 2])
    expect(packs()).toBe(before)
    const real = run(["backup", "prune", "--key", "k.key", "--policy", "keep_last:2"])
    expect(real.code, real.stderr).toBe(0)
    expect(real.stderr).toContain("deleted generation 1 of")
    expect(real.stderr).toMatch(/store: \d+ chunks? no generation uses removed/)
    expect(packs()).toBeLessThan(before)
    const list = JSON.parse(run(["backup", "list", "--json", "--key", "k.key"]).stdout.toString()) as Array<{ generation: number }>
    expect(list.map((g) => g.generation)).toEqual([3, 4])
    expect(run(["backup", "verify", "-q", "--deep", "--key", "k.key"]).code).toBe(0)
    expect(run(["backup", "restore", "-q", "--key", "k.key", "-o", "r.bin", "a.bin"]).code).toBe(0)
    expect(fs.readFileSync(f("r.bin")).equals(fs.readFileSync(f("a.bin")))).toBe(true)
  })
})
