/**
 * A job's segments spread evenly over the runners (issue 16).
 *
 * A segment runs on the runner that owns its workflow's shard: a hash of its execution id,
 * which hashes its idempotency key. Left to the hash, one 17-segment job gave one runner 11
 * segments and the other 6, and took as long as the 11. So at submit the client reads the
 * healthy runners from the cluster's storage, computes the shards' owners as every runner
 * does (a hash ring over the healthy runners, effect's `HashRing.getShards`), and for each
 * segment in turn picks a salt, 0 to 35, whose idempotency key lands on a runner with the
 * fewest bytes so far (per unit of its shard weight). The salts go in the job's payload,
 * one base-36 digit per segment, so a replay of the job after its runner died, and
 * `cancel`, compute the same ids.
 *
 * Only the balance depends on that picture of the cluster being right. A runner that joined
 * or died since, or a hash that changed with an effect release, gives a spread as random as
 * an unsalted one, never a wrong id: every id is computed from the payload by effect itself.
 *
 * @module
 */
import { Cause, Context, Effect, HashRing, Option } from "effect"
import { ClusterSchema, EntityId, Runner, type RunnerAddress, Sharding, ShardingConfig } from "effect/cluster"
import { SqlClient } from "effect/sql"
import type { Workflow } from "effect/workflow"
import { createHash } from "node:crypto"

/** Salts per segment: one base-36 digit. */
export const SALTS = 36

/** Segment `index`'s idempotency key with `salt` (salt 0: the key jobs had before salts). */
export const segmentKey = (job: string, index: number, salt: number) => salt === 0 ? `${job}/${index}` : `${job}/${index}/${salt}`

/** Segment `index`'s salt in a payload's `salts` (a job without salts: 0). */
export const saltOf = (salts: string | undefined, index: number) => salts === undefined ? 0 : Number.parseInt(salts[index] ?? "0", 36)

/**
 * A workflow's execution id for idempotency key `key`, computed as effect 4.0's
 * `Workflow.executionId` does (the first 16 bytes of SHA-256 of `LENGTH:NAME:KEY`, in hex),
 * but synchronously: a job of 160,000 segments tries a few salts for each. Used only to
 * choose salts; a test checks it against effect's own.
 */
export const executionIdOf = (workflow: { readonly _tag: string }, key: string) =>
  createHash("sha256").update(`${workflow._tag.length}:${workflow._tag}:${key}`).digest().subarray(0, 16).toString("hex")

/** The runners that own shards (`host:port`, with their shard weight) and the owner of each shard id (1 to shardsPerGroup). */
export interface Owners {
  readonly runners: ReadonlyArray<{ readonly address: string; readonly weight: number }>
  readonly owner: (shard: number) => string
}

/**
 * Who owns each shard of the default group now, as the runners compute it; undefined with
 * no healthy runner. A runner counts when the cluster's runner table (`cluster_runners`)
 * marks it healthy with a heartbeat within the last `lockSeconds` (the runners' shard lock
 * expiry, after which the others drop it too).
 */
export const shardOwners = (options: { readonly lockSeconds: number; readonly shardsPerGroup?: number }) =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const rows = yield* sql<{ runner: string; healthy: boolean }>`SELECT runner, healthy FROM cluster_runners WHERE last_heartbeat > NOW() - make_interval(secs => ${options.lockSeconds})`
    const ring = HashRing.make<RunnerAddress.RunnerAddress>()
    const runners: Array<{ address: string; weight: number }> = []
    for (const row of rows) {
      const runner = Runner.Runner.decodeSync(row.runner)
      if (!row.healthy || !runner.groups.includes("default")) continue
      HashRing.add(ring, runner.address, { weight: runner.weight })
      runners.push({ address: `${runner.address.host}:${runner.address.port}`, weight: runner.weight })
    }
    const shards = HashRing.getShards(ring, options.shardsPerGroup ?? ShardingConfig.defaults.shardsPerGroup)
    if (shards === undefined) return undefined
    const owners: Owners = { runners, owner: (shard) => `${shards[shard - 1].host}:${shards[shard - 1].port}` }
    return owners
  })

/**
 * The threads each segment of runner `self` (`HOST:PORT`) runs on when `--workers` was not
 * given: the machine's `cores` split among the runners listening on its host (`runners`:
 * the healthy ones, as {@link shardOwners} lists them; `self` counts once, listed or not),
 * at least 1. Hosts are compared as given to `--listen` (`localhost` and `127.0.0.1` are
 * two). Runners on one machine otherwise each sealed on every core: two on 2 cores took 17
 * to 19% less time for a 1 GiB job with one thread each (docs/scale-out.md). A runner alone
 * on its host keeps every core.
 */
export const coresShare = (cores: number, runners: ReadonlyArray<{ readonly address: string }>, self: string) => {
  const hostOf = (address: string) => address.slice(0, address.lastIndexOf(":"))
  const host = hostOf(self)
  const others = runners.filter((r) => r.address !== self && hostOf(r.address) === host).length
  return Math.max(1, Math.floor(cores / (others + 1)))
}

/**
 * Salts for a job's segments (`bytes` of each, in order): one base-36 digit per segment,
 * each chosen so that its key lands on a runner with the fewest bytes so far per unit of
 * weight (the first salt, from 0, that does; else the best of all 36). `shardOf` maps an
 * execution id to its shard id (the cluster's `Sharding.getShardId`).
 */
export const assignSalts = (options: {
  readonly workflow: { readonly _tag: string }
  readonly job: string
  readonly bytes: ReadonlyArray<number>
  readonly owners: Owners
  readonly shardOf: (executionId: string) => number
}) => {
  const { owners } = options
  const weight = new Map(owners.runners.map((r) => [r.address, r.weight]))
  const load = new Map(owners.runners.map((r) => [r.address, 0]))
  // A shard's owner outside the list (cannot happen: the same ring) counts as fully loaded.
  const share = (runner: string) => weight.has(runner) ? load.get(runner)! / weight.get(runner)! : Number.POSITIVE_INFINITY
  const ownerOf = (index: number, salt: number) => owners.owner(options.shardOf(executionIdOf(options.workflow, segmentKey(options.job, index, salt))))
  let salts = ""
  for (const [index, bytes] of options.bytes.entries()) {
    const least = Math.min(...owners.runners.map((r) => share(r.address)))
    let best = 0
    let bestShare = Number.POSITIVE_INFINITY
    for (let salt = 0; salt < SALTS && bestShare > least; salt++) {
      const s = share(ownerOf(index, salt))
      if (s < bestShare) [best, bestShare] = [salt, s]
    }
    salts += best.toString(36)
    const owner = ownerOf(index, best)
    if (load.has(owner)) load.set(owner, load.get(owner)! + bytes)
  }
  return salts
}

/**
 * Salts that spread a job's segments (`bytes` of each, in order, of `workflow`) over the
 * cluster's runners as they are now (see the module's comment); undefined when no runner is
 * known or the runners cannot be read: the hash alone then places the segments.
 */
export const spreadSalts = (workflow: Workflow.Any, job: string, bytes: ReadonlyArray<number>, lockSeconds: number) =>
  Effect.gen(function*() {
    const owners = yield* shardOwners({ lockSeconds })
    if (owners === undefined) return undefined
    const sharding = yield* Sharding.Sharding
    const group = Context.get(workflow.annotations, ClusterSchema.ShardGroup)
    const shardOf = (id: string) => {
      const entityId = EntityId.make(id)
      return sharding.getShardId(entityId, group(entityId)).id
    }
    return assignSalts({ workflow, job, bytes, owners, shardOf })
  }).pipe(
    // Best effort: a storage that does not answer within 5 s leaves the spread to the hash
    // (the submit that follows then reports the storage's error). An interrupt stays one.
    Effect.timeoutOption("5 seconds"),
    Effect.map(Option.getOrUndefined),
    Effect.catchCause((cause) => Cause.hasInterruptsOnly(cause) ? Effect.failCause(cause as Cause.Cause<never>) : Effect.succeed(undefined))
  )
