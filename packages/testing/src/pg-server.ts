import { setTimeout as sleep } from 'node:timers/promises'
import postgres from 'postgres'
import type { EmbeddedCluster } from './embedded-cluster.js'
import { pausedBackends } from './paused-backends.js'
import { ADMIN_APPLICATION_NAME } from './pg-constants.js'

const clusters = new WeakMap<PgServer, EmbeddedCluster>()

/** @internal The cluster behind an embedded server, for the harness's own helpers. */
export function embeddedCluster(server: PgServer): EmbeddedCluster | undefined {
  return clusters.get(server)
}

/** Which backends {@link PgServer.terminate} ends. */
export type TerminateTarget = number | readonly number[] | { applicationName: string }

/** Restricts {@link PgServer.backendPids}. */
export interface BackendFilter {
  /** Only backends whose `application_name` equals this. */
  applicationName?: string
}

/** Options for {@link PgServer.restart}. */
export interface RestartOptions {
  /**
   * How long the server stays down between stop and start, in milliseconds.
   * @default 0
   */
  downMs?: number
}

/**
 * How long close() lets each client finish in-flight queries before it cuts
 * the sockets, in seconds (postgres.js's unit). The server is going away anyway.
 */
const CLIENT_END_TIMEOUT_S = 0.5
/**
 * How long terminate() waits for each backend to exit, in milliseconds, so the
 * caller can count connections right after. A paused backend cannot exit until
 * resumed, so it is not waited for.
 */
const TERMINATE_WAIT_MS = 5_000

/**
 * A Postgres server for a test: either a throwaway embedded one (fault
 * injection allowed) or the shared one named by DATABASE_URL (`embedded:
 * false`; restart, pause and an untargeted terminate would hit other tests'
 * connections, so they throw).
 */
export class PgServer implements AsyncDisposable {
  /** `postgres://user:password@127.0.0.1:port/postgres` (or DATABASE_URL). */
  readonly url: string
  /** TCP port the server listens on. */
  readonly port: number
  /** True when this harness started the server and may stop, restart or signal it. */
  readonly embedded: boolean
  /**
   * Superuser client for setup and fault injection, `max: 4`, with
   * `application_name: 'herald-testing-admin'` so it is left out of
   * {@link backendPids} and {@link terminate}. It survives restarts: postgres.js
   * reconnects on the next query (a query in flight across a restart fails).
   */
  readonly sql: postgres.Sql
  readonly #cluster: EmbeddedCluster | undefined
  readonly #clients = new Set<postgres.Sql>()
  readonly #paused = new Set<number>()
  #closing: Promise<void> | undefined

  /** @internal Use `startPostgres()`. */
  constructor(url: string, cluster?: EmbeddedCluster) {
    this.url = url
    this.port = Number(new URL(url).port || 5432)
    this.embedded = cluster !== undefined
    this.#cluster = cluster
    if (cluster) clusters.set(this, cluster)
    this.sql = postgres(url, {
      max: 4,
      onnotice: () => {},
      connection: { application_name: ADMIN_APPLICATION_NAME },
    })
  }

  /** The postmaster's pid. Embedded servers only; throws while stopped. */
  get postmasterPid(): number {
    const pid = this.#embedded('postmasterPid').postmasterPid
    if (pid === undefined) throw new Error('PgServer: the server is stopped, it has no postmaster pid')
    return pid
  }

  /** A new postgres.js client to this server; close() ends it. */
  connect(options?: postgres.Options<Record<string, postgres.PostgresType>>): postgres.Sql {
    this.#assertOpen()
    const client = postgres(this.url, { onnotice: () => {}, ...options })
    this.#clients.add(client)
    return client
  }

  /**
   * Pids of the client backends, without the admin client's own. On the shared
   * server they include other test files' connections: filter by name.
   */
  async backendPids(filter: BackendFilter = {}): Promise<number[]> {
    const rows = await this.sql<{ pid: number }[]>`
      select pid from pg_stat_activity
      where ${this.#clientBackends()}
      ${filter.applicationName === undefined ? this.sql`` : this.sql`and application_name = ${filter.applicationName}`}
      order by pid`
    return rows.map((row) => row.pid)
  }

  /**
   * `pg_terminate_backend` on the given pids, or on every client backend but
   * the admin client's. Waits until each (unpaused) backend has exited and
   * returns how many were terminated. Without a target only an embedded
   * server accepts it: on the shared one it would cut other test files off.
   */
  async terminate(target?: TerminateTarget): Promise<number> {
    if (target === undefined) this.#embedded('terminate() without a target')
    const paused = [...this.#paused]
    // Materialized so that the filter runs before any pg_terminate_backend: in
    // a single WHERE the planner may call it first, on the admin's own backend.
    const [row] = await this.sql<{ terminated: number }[]>`
      with targets as materialized (${this.#targets(target)})
      select count(*) filter (
        where pg_terminate_backend(pid, case when pid = any(${this.#int4Array(paused)}) then 0 else ${TERMINATE_WAIT_MS} end)
      )::int as terminated
      from targets`
    return row?.terminated ?? 0
  }

  /**
   * SIGSTOPs a backend of this server: its socket stays open but nothing
   * answers, which is what a half-open connection looks like to a client.
   * close(), stop() and restart() resume it first.
   */
  async pause(pid: number): Promise<void> {
    this.#embedded('pause()')
    // Refuse a pid that is not ours: SIGSTOP on the wrong process is a hang.
    const [row] = await this.sql<{ found: boolean }[]>`
      select exists (select 1 from pg_stat_activity where pid = ${pid} and pid <> pg_backend_pid()) as found`
    if (!row?.found) throw new Error(`PgServer.pause(): ${pid} is not a backend of this server`)
    pausedBackends.add(pid)
    this.#paused.add(pid)
    process.kill(pid, 'SIGSTOP')
  }

  /** SIGCONTs a backend paused by {@link pause}. */
  resume(pid: number): Promise<void> {
    return new Promise((resolve) => {
      this.#embedded('resume()')
      this.#resume(pid)
      resolve()
    })
  }

  /** Stops the postmaster (fast shutdown: every connection is cut). */
  async stop(): Promise<void> {
    const cluster = this.#embedded('stop()')
    this.#assertOpen()
    this.#resumeAll()
    await cluster.stop()
  }

  /** Starts the postmaster again on the same port and data directory. */
  async start(): Promise<void> {
    const cluster = this.#embedded('start()')
    this.#assertOpen()
    await cluster.start()
  }

  /** stop(), optionally stay down `downMs`, start(). */
  async restart(options: RestartOptions = {}): Promise<void> {
    this.#embedded('restart()')
    await this.stop()
    if (options.downMs) await sleep(options.downMs)
    await this.start()
  }

  /**
   * Ends every client from connect() and the admin client, stops the server
   * and deletes its data directory (embedded). Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      // Resume first: a client ending over a stopped backend waits for a
      // goodbye that never comes, and so would the server's shutdown.
      this.#resumeAll()
      await Promise.allSettled(
        [...this.#clients, this.sql].map((client) => client.end({ timeout: CLIENT_END_TIMEOUT_S })),
      )
      this.#clients.clear()
      await this.#cluster?.remove()
    })()
    return this.#closing
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close()
  }

  #targets(target: TerminateTarget | undefined) {
    if (typeof target === 'number') return this.sql`select ${target}::int4 as pid`
    if (target === undefined)
      return this.sql`select pid from pg_stat_activity where ${this.#clientBackends()}`
    if ('applicationName' in target) {
      return this.sql`select pid from pg_stat_activity
        where ${this.#clientBackends()} and application_name = ${target.applicationName}`
    }
    return this.sql`select unnest(${this.#int4Array(target)}) as pid`
  }

  /**
   * An int4[] parameter. Not `sql.array()`: a client learns the array type
   * oids once its first connection is up, so its first query would send the
   * array as a plain int4 ("op ANY/ALL (array) requires array on right side").
   */
  #int4Array(values: readonly number[]) {
    return this.sql`string_to_array(${values.join(',')}, ',')::int4[]`
  }

  #clientBackends() {
    return this.sql`backend_type = 'client backend'
      and pid <> pg_backend_pid()
      and application_name is distinct from ${ADMIN_APPLICATION_NAME}`
  }

  #resume(pid: number): void {
    try {
      process.kill(pid, 'SIGCONT')
    } catch (error) {
      // Terminated or the server stopped meanwhile: nothing left to resume.
      if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error
    }
    this.#paused.delete(pid)
    pausedBackends.delete(pid)
  }

  #resumeAll(): void {
    for (const pid of this.#paused) this.#resume(pid)
  }

  #embedded(what: string): EmbeddedCluster {
    if (!this.#cluster) {
      throw new Error(
        `PgServer: ${what} needs a server this harness started; this one comes from DATABASE_URL and is shared. ` +
          'Use startPostgres({ faults: true }).',
      )
    }
    return this.#cluster
  }

  #assertOpen(): void {
    if (this.#closing) throw new Error('PgServer: closed')
  }
}
