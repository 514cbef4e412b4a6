import { appendFile, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { EmbeddedCluster } from './embedded-cluster.js'
import { PG_PASSWORD, PG_USER } from './pg-constants.js'
import { embeddedCluster, PgServer } from './pg-server.js'
import { waitFor } from './wait-for.js'

/** Options for {@link startStandby}. */
export interface StartStandbyOptions {
  /**
   * Names the temp directory and prefixes the log lines (HERALD_PG_LOG=1).
   * @default 'standby'
   */
  label?: string
  /**
   * Give up waiting for the standby to stream from its primary after this long, in ms.
   * @default 20000
   */
  timeoutMs?: number
}

/**
 * A streaming hot standby of an embedded primary: a read replica whose lag a test controls
 * with {@link pauseReplay} and {@link resumeReplay}.
 */
export class StandbyServer extends PgServer {
  /** The primary's port it streams from. */
  readonly primaryPort: number

  /** @internal Use `startStandby()`. */
  constructor(url: string, cluster: EmbeddedCluster, primaryPort: number) {
    super(url, cluster)
    this.primaryPort = primaryPort
  }

  /**
   * Stops applying WAL (`pg_wal_replay_pause()`); it keeps receiving it. Resolves once replay
   * has actually paused, so every commit on the primary from now on stays invisible here.
   */
  async pauseReplay(): Promise<void> {
    await this.sql`select pg_wal_replay_pause()`
    await waitFor(
      async () => {
        const [row] = await this.sql<{ state: string }[]>`select pg_get_wal_replay_pause_state() as state`
        return row?.state === 'paused'
      },
      { message: 'replay did not pause' },
    )
  }

  /** Applies WAL again (`pg_wal_replay_resume()`). */
  async resumeReplay(): Promise<void> {
    await this.sql`select pg_wal_replay_resume()`
  }

  /** `pg_last_wal_replay_lsn()` as text, e.g. `0/3000148`. */
  async replayLsn(): Promise<string> {
    const [row] = await this.sql<{ lsn: string | null }[]>`select pg_last_wal_replay_lsn()::text as lsn`
    return row?.lsn ?? '0/0'
  }

  /** Resolves once this standby has replayed everything `primary` had committed when called. */
  async caughtUp(primary: PgServer, timeoutMs = 10_000): Promise<void> {
    // The insert position, not the flush position: with synchronous_commit=off a commit
    // returns before its record is flushed, so the flush position can still precede it.
    const [target] = await primary.sql<{ lsn: string }[]>`select pg_current_wal_insert_lsn()::text as lsn`
    const lsn = target?.lsn ?? '0/0'
    await waitFor(
      async () => {
        const [row] = await this.sql<{ done: boolean }[]>`
          select pg_last_wal_replay_lsn() >= ${lsn}::pg_lsn as done`
        return row?.done === true
      },
      { timeoutMs, message: `the standby did not replay up to ${lsn}` },
    )
  }
}

/**
 * Starts a streaming standby of an embedded primary (`startPostgres({ faults: true })`).
 *
 * The embedded binaries have no `pg_basebackup`, so the primary is stopped for the copy (a
 * stopped cluster's directory ends in a shutdown checkpoint: a valid base backup), the copy gets
 * `standby.signal` and `primary_conninfo`, and the primary starts again before the standby so
 * its WAL receiver connects at the first attempt. Connections to the primary are cut by the
 * stop (postgres.js clients reconnect): start the standby before opening Heralds.
 * Resolves once the standby streams; `close()` stops it and deletes its directory.
 */
export async function startStandby(
  primary: PgServer,
  options: StartStandbyOptions = {},
): Promise<StandbyServer> {
  const source = embeddedCluster(primary)
  if (source === undefined) {
    throw new Error('startStandby() needs a primary this harness started: startPostgres({ faults: true })')
  }
  const label = (options.label ?? 'standby').replace(/[^a-zA-Z0-9_-]+/g, '_').slice(0, 30)
  await allowReplication(source.dataDir)
  await primary.stop()
  let restarted = false
  const restart = async (): Promise<void> => {
    restarted = true
    await primary.start()
  }
  let cluster: EmbeddedCluster
  try {
    cluster = await EmbeddedCluster.create({
      label,
      standby: true,
      source: source.dataDir,
      primaryConninfo: `host=127.0.0.1 port=${primary.port} user=${PG_USER} password=${PG_PASSWORD} application_name=${label}`,
      // Retry a lost primary every 100 ms instead of 5 s, so a primary restart heals fast.
      postgresFlags: ['-c', 'wal_retrieve_retry_interval=100ms'],
      copied: restart,
    })
  } finally {
    if (!restarted) await primary.start()
  }
  const standby = new StandbyServer(
    `postgres://${PG_USER}:${PG_PASSWORD}@127.0.0.1:${cluster.port}/postgres`,
    cluster,
    primary.port,
  )
  try {
    await waitFor(
      async () => {
        const [row] = await standby.sql<{ status: string }[]>`select status from pg_stat_wal_receiver`
        return row?.status === 'streaming'
      },
      { timeoutMs: options.timeoutMs ?? 20_000, message: 'the standby does not stream from its primary' },
    )
  } catch (error) {
    await standby.close()
    throw error
  }
  return standby
}

/** initdb allows replication from 127.0.0.1; a template from elsewhere might not. */
async function allowReplication(dataDir: string): Promise<void> {
  const hba = join(dataDir, 'pg_hba.conf')
  const text = await readFile(hba, 'utf8')
  if (/^\s*host\s+replication\s+all\s+127\.0\.0\.1\/32\s/m.test(text)) return
  // Read at the restart startStandby does anyway.
  await appendFile(hba, '\nhost replication all 127.0.0.1/32 password\n')
}
