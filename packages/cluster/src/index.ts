/**
 * @cage/cluster: one Cage job across many machines on Effect Cluster with PostgreSQL (issue
 * 16, in progress). See README.md for the design and what exists so far.
 *
 * @module
 */
export * as Plan from "./Plan.js"
export * as Segment from "./Segment.js"
export * as Cluster from "./Cluster.js"
export * as Backup from "./Backup.js"
export * as Job from "./Job.js"
export * as Postgres from "./Postgres.js"
export * as Spread from "./Spread.js"
