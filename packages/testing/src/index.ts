export { once, type OnceEmitter, type OnceOptions } from './once.js'
export type { BackendFilter, PgServer, RestartOptions, TerminateTarget } from './pg-server.js'
export { startPostgres, type StartPostgresOptions } from './start-postgres.js'
export { uniqueName } from './unique-name.js'
export { waitFor, type Truthy, type WaitForOptions } from './wait-for.js'
export { startStandby, StandbyServer, type StartStandbyOptions } from './start-standby.js'
export {
  PGBOUNCER_MISSING,
  PgBouncer,
  pgBouncerBinary,
  startPgBouncer,
  type PoolMode,
  type StartPgBouncerOptions,
} from './pgbouncer.js'
export { POSTGRES_PACKAGE_VARIABLE } from './postgres-binaries.js'
