/**
 * Failures, table-driven, with real `cage` processes: each row is a command, what happens to
 * it (mid-run, by progress), the exit code, the first line of stderr and every file left in
 * the directory afterwards (nothing extra), then what the same command does when run again.
 */
import { spawn, spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import * as fs from "node:fs"
import * as path from "node:path"
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest"
import { BIN, cage, readOffset, tempDir, writeRandom } from "./helpers.js"

let dir: string
const f = (name: string) => path.join(dir, name)
const sha = (file: string) => createHash("sha256").update(fs.readFileSync(file)).digest("hex")
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

interface Outcome {
  readonly code: number | null
  readonly stderr: string
  readonly stdout: Buffer
}

/**
 * Runs `cage args` (through `bash -c` when `shell`), doing `during` once `watch` holds
 * `atBytes`, or once the process has read `atBytes` of the file `watchRead`.
 */
const run = async (row: { args: ReadonlyArray<string>; shell?: string; watch?: string; watchRead?: string; atBytes?: number; during?: (pid: number) => void }): Promise<Outcome> => {
  const child = row.shell
    ? spawn("bash", ["-c", row.shell], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] })
    : spawn(process.execPath, [BIN, ...row.args], { cwd: dir, stdio: ["ignore", "pipe", "pipe"] })
  let stderr = ""
  const out: Array<Buffer> = []
  child.stderr!.on("data", (d) => (stderr += d))
  child.stdout!.on("data", (d) => out.push(d))
  const closed = new Promise<number | null>((r) => child.on("close", (code) => r(code)))
  if (row.during) {
    let fired = false
    while (child.exitCode === null) {
      let size = -1
      if (row.watchRead !== undefined) {
        size = readOffset(child.pid!, row.watchRead)
      } else {
        try {
          size = fs.statSync(path.join(dir, row.watch!)).size
        } catch {
          // not there yet
        }
      }
      if (size >= (row.atBytes ?? 0)) {
        row.during(child.pid!)
        fired = true
        break
      }
      await sleep(2)
    }
    expect(fired, "the action must land mid-run").toBe(true)
  }
  const code = await closed
  return { code, stderr, stdout: Buffer.concat(out) }
}

const MiB = 1 << 20
const slow = ["--limit-rate", "8MiB", "--checkpoint-interval", "100", "-q"]

interface Row {
  readonly name: string
  readonly setup?: () => void
  readonly args: ReadonlyArray<string>
  readonly shell?: string
  readonly watch?: string
  /** Instead of `watch`: a file the command reads, watched by its read offset. */
  readonly watchRead?: string
  readonly atBytes?: number
  readonly during?: (pid: number) => void
  readonly code: number
  readonly stderr: RegExp
  readonly files: ReadonlyArray<string>
  /** The same command (or a repair then the same command) afterwards. */
  readonly then?: () => void
}

const flipByte = (file: string, at: number) => {
  const fd = fs.openSync(file, "r+")
  const b = Buffer.alloc(1)
  fs.readSync(fd, b, 0, 1, at)
  b[0] ^= 0xff
  fs.writeSync(fd, b, 0, 1, at)
  fs.closeSync(fd)
}

let original = ""
const rows: ReadonlyArray<Row> = [
  {
    name: "input truncated mid-run: exit 4, nothing left, the rerun succeeds with no flag",
    args: ["encrypt", "--key", "k.key", ...slow, "in"],
    watch: "in.agcm.partial",
    atBytes: 2 * MiB,
    during: () => fs.truncateSync(f("in"), 3 * MiB),
    code: 4,
    // Seen by the size check or by a read that came back short, whichever comes first.
    stderr: /^cage: error: in changed while it was being read \((size in bytes: was 8388608, now 3145728|it shrank: expected \d+ bytes at \d+, got \d+)[,)]/,
    files: ["in", "k.key"],
    then: () => {
      expect(cage(["encrypt", "--key", "k.key", "-q", "in"], { cwd: dir }).code).toBe(0)
      expect(cage(["decrypt", "--key", "k.key", "-q", "-o", "rt", "in.agcm"], { cwd: dir }).code).toBe(0)
      expect(sha(f("rt"))).toBe(sha(f("in")))
    }
  },
  {
    name: "input rewritten at its start and its end mid-run: exit 4, nothing left, the rerun succeeds",
    args: ["encrypt", "--key", "k.key", ...slow, "in"],
    watch: "in.agcm.partial",
    atBytes: 3 * MiB,
    during: () => {
      flipByte(f("in"), 0)
      flipByte(f("in"), 8 * MiB - 1)
    },
    code: 4,
    stderr: /^cage: error: in changed while it was being read \(modification time/,
    files: ["in", "k.key"],
    then: () => expect(cage(["encrypt", "--key", "k.key", "-q", "in"], { cwd: dir }).code).toBe(0)
  },
  ...(["SIGTERM", "SIGHUP", "SIGINT"] as const).map((signal): Row => ({
    name: `${signal} mid-run: exit ${128 + { SIGTERM: 15, SIGHUP: 1, SIGINT: 2 }[signal]}, the note, and the rerun resumes`,
    args: ["encrypt", "--key", "k.key", "--limit-rate", "8MiB", "--checkpoint-interval", "50", "in"],
    watch: "in.agcm.cage-checkpoint",
    atBytes: 1,
    during: (pid) => process.kill(pid, signal),
    code: 128 + { SIGTERM: 15, SIGHUP: 1, SIGINT: 2 }[signal],
    stderr: new RegExp(`^cage: interrupted \\(${signal}\\); run the same command again to resume$`, "m"),
    files: ["in", "in.agcm.cage-checkpoint", "in.agcm.partial", "k.key"],
    then: () => {
      const r = cage(["encrypt", "--key", "k.key", "--json", "in"], { cwd: dir })
      expect(r.code).toBe(0)
      expect(JSON.parse(r.stdout.toString()).resumedFrom).toBeGreaterThan(0)
      expect(cage(["decrypt", "--key", "k.key", "-q", "-o", "rt", "in.agcm"], { cwd: dir }).code).toBe(0)
      expect(sha(f("rt"))).toBe(original)
    }
  })),
  {
    name: "Ctrl-C of a run reading standard input says it cannot be resumed",
    args: [],
    shell: `exec node ${BIN} encrypt --key k.key --limit-rate 8MiB -o out.agcm - < in`,
    watch: "out.agcm.partial",
    atBytes: MiB,
    during: (pid) => process.kill(pid, "SIGINT"),
    code: 130,
    stderr: /^cage: interrupted \(SIGINT\); nothing was published; a run reading standard input cannot be resumed$/m,
    files: ["in", "k.key"]
  },
  {
    name: "a closed standard output ends the run quietly with 141, no stack",
    args: [],
    setup: () => expect(cage(["encrypt", "--key", "k.key", "-q", "in"], { cwd: dir }).code).toBe(0),
    shell: `node ${BIN} decrypt --key k.key -o - in.agcm | head -c 10 > ten; exit \${PIPESTATUS[0]}`,
    code: 141,
    stderr: /^$/,
    files: ["in", "in.agcm", "k.key", "ten"]
  },
  {
    name: "encrypt to a closed standard output ends quietly with 141 too",
    args: [],
    shell: `node ${BIN} encrypt --key k.key -o - in | head -c 10 > ten; exit \${PIPESTATUS[0]}`,
    code: 141,
    stderr: /^$/,
    files: ["in", "k.key", "ten"]
  },
  {
    name: "migrate of a v1 file rewritten mid-run: exit 4, nothing published",
    setup: () => {
      const vectors = path.resolve(__dirname, "../../../../shared/vectors/harpocrates-v1")
      const v = (JSON.parse(fs.readFileSync(path.join(vectors, "vectors.json"), "utf8")) as Array<{ name: string; key: string; file: string }>)
        .find((x) => x.name === "v1_12_cs4096_len1048576")!
      fs.copyFileSync(path.join(vectors, v.file), f("v1.agcm"))
      fs.writeFileSync(f("v1.key"), `${v.key}\n`, { mode: 0o600 })
    },
    args: ["migrate", "v1.agcm", "-o", "m.agcm", "--key", "v1.key", "--limit-rate", "512KiB", "-q"],
    // The v2 encryptor writes 2 MiB segments, so this 1 MiB file's output appears only at
    // the end: "mid-run" is judged by how far the input was read (the rate limit leaves
    // at least 1.5 s of reading after it).
    watchRead: "v1.agcm",
    atBytes: 256 * 1024,
    // A byte already read: the stream stays readable, only the file's identity tells.
    during: () => flipByte(f("v1.agcm"), 100),
    code: 4,
    stderr: /^cage: error: v1\.agcm changed while it was being read \(modification time/,
    files: ["in", "k.key", "v1.agcm", "v1.key"]
  },
  {
    name: "decrypt of a file tampered in the middle: exit 3, no partial plaintext, no checkpoint; after repair it succeeds",
    setup: () => {
      expect(cage(["encrypt", "--key", "k.key", "-q", "in"], { cwd: dir }).code).toBe(0)
      flipByte(f("in.agcm"), 4 * MiB)
    },
    args: ["decrypt", "--key", "k.key", "--checkpoint-interval", "10", "--limit-rate", "16MiB", "-q", "-o", "d.out", "in.agcm"],
    code: 3,
    stderr: /^cage: error: in\.agcm: chunk 63 failed authentication: it was modified, reordered or replaced \(chunk 63 is bytes 4129842 to 4195394 of in\.agcm\)$/,
    files: ["in", "in.agcm", "k.key"],
    then: () => {
      flipByte(f("in.agcm"), 4 * MiB)
      expect(cage(["decrypt", "--key", "k.key", "-q", "-o", "d.out", "in.agcm"], { cwd: dir }).code).toBe(0)
      expect(sha(f("d.out"))).toBe(original)
    }
  },
  {
    name: "decrypt with 5 bytes of trailing data: exit 3, nothing left",
    setup: () => {
      expect(cage(["encrypt", "--key", "k.key", "-q", "in"], { cwd: dir }).code).toBe(0)
      fs.appendFileSync(f("in.agcm"), "extra")
    },
    args: ["decrypt", "--key", "k.key", "--checkpoint-interval", "10", "-q", "-o", "d.out", "in.agcm"],
    code: 3,
    stderr: /^cage: error: .*trailing/i,
    files: ["in", "in.agcm", "k.key"]
  },
  ...(["age", "age-lib"] as const).flatMap((backend) => [["empty", ""], ["comments only", "# nobody\n\n"]].map(([what, text]): Row => ({
    name: `--backend ${backend} with a recipients file that is ${what}: exit 2, nothing written`,
    setup: () => fs.writeFileSync(f("r.txt"), text),
    args: ["encrypt", "--backend", backend, "-R", "r.txt", "-o", "in.age", "in"],
    code: 2,
    stderr: new RegExp(`^cage: error: ${backend}: invalid recipient: no recipients found in the recipients file \\(-R\\) r\\.txt \\(only blank lines or # comments\\)`),
    files: ["in", "k.key", "r.txt"]
  }))),
  {
    name: "decrypt with the wrong key names the input file, no engine internals: exit 3, nothing left",
    setup: () => {
      expect(cage(["encrypt", "--key", "k.key", "-q", "in"], { cwd: dir }).code).toBe(0)
      expect(cage(["keygen", "-q", "-o", "other.key"], { cwd: dir }).code).toBe(0)
    },
    args: ["decrypt", "--key", "other.key", "-o", "d.out", "in.agcm"],
    code: 3,
    stderr: /^cage: error: in\.agcm: wrong key or passphrase, or the header was tampered with \(commitment mismatch\)$/,
    files: ["in", "in.agcm", "k.key", "other.key"]
  },
  {
    name: "a chunk size the cipher refuses names the flag it came from",
    args: ["encrypt", "--key", "k.key", "--chunk-size", "5", "in"],
    code: 2,
    stderr: /^cage: error: --chunk-size 5: a chunk size must be a power of two from 16 KiB to 4 MiB, got 5 bytes$/,
    files: ["in", "k.key"]
  },
  {
    name: "a chunk size the cipher refuses names the cage.toml it came from",
    setup: () => fs.writeFileSync(f("cage.toml"), 'chunk_size = "0"\n'),
    args: ["encrypt", "--key", "k.key", "in"],
    code: 2,
    stderr: /^cage: error: chunk_size in \S+cage\.toml: a chunk size must be a power of two from 16 KiB to 4 MiB, got 0 bytes$/,
    files: ["cage.toml", "in", "k.key"]
  },
  {
    name: "chunk plan checks the size as encrypt does (AGCM owns it), with the same message",
    args: ["chunk", "plan", "--chunk-size", "0", "in"],
    code: 2,
    stderr: /^cage: error: --chunk-size 0: a chunk size must be a power of two from 16 KiB to 4 MiB, got 0 bytes$/,
    files: ["in", "k.key"]
  },
  ...([
    [["encrypt", "--key", "k.key", "-a", "in"], "-a/--armor is an age feature: add --backend age (AGCM output is binary)"],
    [["encrypt", "-r", "age1qqq", "in"], "-r/-R recipients are an age feature: add --backend age (AGCM uses --key or --passphrase-file)"],
    [["encrypt", "--backend", "age", "-r", "age1qqq", "--chunk-size", "1MiB", "in"], "--chunk-size applies to AGCM; --backend age writes age's fixed 64 KiB chunks"],
    [["decrypt", "--key", "k.key", "-i", "id.txt", "-o", "x", "in"], "-i identities are an age feature: add --backend age (AGCM uses --key or --passphrase-file)"],
    [["encrypt", "--key", "k.key", "--limit-rate", "0", "in"], "--limit-rate: \"0\" is not a positive size in bytes per second (examples: 100MiB, 50MB, 1048576)"],
    [["encrypt", "--backend", "age", "-r", "age1qqq", "--limit-rate", "1MiB", "in"], "--limit-rate needs the AGCM backend (the age CLI reads its input itself)"],
    [["keygen", "-o", "-"], "cage keygen writes a new key file with mode 0600: give it a path (-o FILE); it never writes a key to standard output"]
  ] as const).map(([args, message]): Row => ({
    name: `a flag that does not apply is refused: ${args.join(" ")}`,
    args,
    code: 2,
    stderr: new RegExp(`^cage: error: ${esc(message)}$`),
    files: ["in", "k.key"]
  })),
  {
    name: "decrypt of an age file without --backend age says it is an age file",
    setup: () => fs.writeFileSync(f("in.age"), "age-encryption.org/v1\n-> X25519 abc\n"),
    args: ["decrypt", "--key", "k.key", "-o", "x", "in.age"],
    code: 2,
    stderr: /^cage: error: in\.age is an age file, not AGCM: decrypt it with --backend age -i IDENTITY \(or --passphrase-file\)$/,
    files: ["in", "in.age", "k.key"]
  },
  {
    name: "json validate - reads standard input",
    args: [],
    shell: `printf '[1,2' | node ${BIN} json validate -`,
    code: 3,
    stderr: /^cage: error: stdin:1:5: invalid JSON \(UnexpectedEnd\) at byte 4/,
    files: ["in", "k.key"]
  },
  {
    name: "audit report never replaces an existing report.html unasked",
    setup: () => {
      expect(cage(["encrypt", "--key", "k.key", "-q", "--audit-log", "a.jsonl", "in"], { cwd: dir }).code).toBe(0)
      fs.writeFileSync(f("report.html"), "mine")
    },
    args: ["audit", "report", "a.jsonl"],
    code: 4,
    stderr: /^cage: error: report\.html: create failed: already exists \(refusing to overwrite\)$/,
    files: ["a.jsonl", "in", "in.agcm", "k.key", "report.html"],
    then: () => {
      expect(fs.readFileSync(f("report.html"), "utf8")).toBe("mine")
      expect(cage(["audit", "report", "-q", "--force", "a.jsonl"], { cwd: dir }).code).toBe(0)
      expect(fs.readFileSync(f("report.html"), "utf8")).toContain("<html")
    }
  },
  {
    name: "encrypt with -o naming the input, even with --force: exit 2, the input untouched",
    args: ["encrypt", "--key", "k.key", "--force", "-o", "in", "in"],
    code: 2,
    stderr: /^cage: error: refusing to write in: it is the input in, which this command reads; name another output with -o$/,
    files: ["in", "k.key"],
    then: () => expect(sha(f("in"))).toBe(original)
  },
  {
    name: "encrypt with -o naming a hard link to the input, with --force: exit 2",
    setup: () => fs.linkSync(f("in"), f("alias")),
    args: ["encrypt", "--key", "k.key", "--force", "-o", "alias", "in"],
    code: 2,
    stderr: /^cage: error: refusing to write alias: it is the input in, which this command reads/,
    files: ["alias", "in", "k.key"]
  },
  {
    name: "encrypt with -o naming the key file, with --force: exit 2, the key untouched",
    args: ["encrypt", "--key", "k.key", "--force", "-o", "k.key", "in"],
    code: 2,
    stderr: /^cage: error: refusing to write k.key: it is the --key file k.key, which this command reads/,
    files: ["in", "k.key"]
  }
]

describe("failures: exit code, first line of stderr, files left, and the rerun", () => {
  beforeEach(() => {
    dir = tempDir()
    expect(cage(["keygen", "-q", "-o", f("k.key")]).code).toBe(0)
    writeRandom(f("in"), 8 * MiB)
    original = sha(f("in"))
  })

  it.for(rows)("$name", async (row) => {
    row.setup?.()
    const r = await run(row)
    expect(r.stderr.split("\n")[0]).toMatch(row.stderr)
    expect(r.stderr).not.toMatch(/\n\s+at /) // never a stack trace
    expect(r.code).toBe(row.code)
    expect(fs.readdirSync(dir).sort()).toEqual([...row.files].sort())
    row.then?.()
    fs.rmSync(dir, { recursive: true, force: true })
  })
})

describe("a full filesystem (a 40 MiB tmpfs made by the test)", () => {
  let mnt: string
  beforeAll(() => {
    dir = tempDir()
    mnt = path.join(dir, "mnt")
    fs.mkdirSync(mnt)
    // Root is how this suite runs (scripts/setup.sh installs with apt as root); a mount
    // failure fails the test rather than skipping what it is about.
    const m = spawnSync("mount", ["-t", "tmpfs", "-o", "size=40m", "tmpfs", mnt], { encoding: "utf8" })
    expect(m.status, `mount: ${m.stderr}`).toBe(0)
    expect(cage(["keygen", "-q", "-o", f("k.key")]).code).toBe(0)
    writeRandom(f("in"), 64 * MiB)
  })
  afterAll(() => {
    spawnSync("umount", [mnt])
    fs.rmSync(dir, { recursive: true, force: true })
  })
  const left = () => fs.readdirSync(mnt).sort()

  it.for([
    { verb: "encrypt", args: () => ["encrypt", "--key", f("k.key"), "-q", "-o", path.join(mnt, "o"), f("in")] },
    { verb: "decrypt", args: () => ["decrypt", "--key", f("k.key"), "-q", "-o", path.join(mnt, "o"), f("in.agcm")] }
  ])("$verb: exit 4 naming the file, twice, no temporaries, no lock; once space is freed the same command succeeds", ({ verb, args }) => {
    if (verb === "decrypt" && !fs.existsSync(f("in.agcm"))) expect(cage(["encrypt", "--key", f("k.key"), "-q", f("in")]).code).toBe(0)
    for (let attempt = 0; attempt < 2; attempt++) {
      const r = cage(args())
      expect(r.code).toBe(4)
      expect(r.stderr.split("\n")[0]).toMatch(new RegExp(`^cage: error: ${esc(path.join(mnt, "o"))}\\S*: \\S+ failed: no space left on device$`))
      expect(left().every((name) => name === "o.partial" || name === "o.cage-checkpoint"), left().join(" ")).toBe(true)
    }
    expect(spawnSync("mount", ["-o", "remount,size=200m", mnt]).status).toBe(0)
    const r = cage(args())
    expect(r.stderr).toBe("")
    expect(r.code).toBe(0)
    expect(left()).toEqual(["o"])
    if (verb === "decrypt") expect(sha(path.join(mnt, "o"))).toBe(sha(f("in")))
    fs.rmSync(path.join(mnt, "o"))
    expect(spawnSync("mount", ["-o", "remount,size=40m", mnt]).status).toBe(0)
  })
})
