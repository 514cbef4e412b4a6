import { EmbeddedCluster } from './embedded-cluster.js'
import { PG_PASSWORD, PG_USER } from './pg-constants.js'
import { PgServer } from './pg-server.js'

/** Options for {@link startPostgres}. */
export interface StartPostgresOptions {
  /**
   * Start a server of its own even when DATABASE_URL is set, so the test may
   * stop, restart and pause it and terminate any backend.
   * @default false
   */
  faults?: boolean
  /**
   * Extra `postgres` arguments, e.g. `['-c', 'idle_session_timeout=1000']`.
   * They cannot be applied to a shared server, so giving any also starts a
   * server of its own.
   * @default []
   */
  postgresFlags?: string[]
  /**
   * Start a hot standby of its own (in recovery, read-only, no primary): LISTEN and NOTIFY
   * fail on it as on any read replica.
   * @default false
   */
  standby?: boolean
  /**
   * Names the temp directory and prefixes the log lines (HERALD_PG_LOG=1).
   * @default 'test'
   */
  label?: string
}

/**
 * A Postgres server for a test. With DATABASE_URL set (the global setup sets
 * it to one server shared by the whole run) and no `faults` or
 * `postgresFlags`, that server; otherwise a throwaway embedded one on a free
 * port of 127.0.0.1, copied from a once-per-run initdb. `await using` it, or
 * call close().
 */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PgServer> {
  const shared = process.env['DATABASE_URL']
  const postgresFlags = options.postgresFlags ?? []
  if (shared && !options.faults && !options.standby && postgresFlags.length === 0) return new PgServer(shared)
  const label = (options.label ?? 'test').replace(/[^a-zA-Z0-9_-]+/g, '_').slice(0, 30)
  const cluster = await EmbeddedCluster.create({ label, postgresFlags, standby: options.standby === true })
  const url = `postgres://${PG_USER}:${PG_PASSWORD}@127.0.0.1:${cluster.port}/postgres`
  return new PgServer(url, cluster)
}
