import { randomBytes } from 'node:crypto'
import {
  createClient,
  DISABLE_SESSION_TIMEOUTS,
  deferred,
  Heartbeat,
  HeraldError,
  raceWait,
  quoteIdentifier,
  systemClock,
  type ConnectionConfig,
  type Deferred,
} from '@herald/core'
import type { Sql } from 'postgres'

export interface HolderSessionOptions {
  readonly connection: ConnectionConfig
  readonly applicationName: string
  readonly heartbeatMs: number
  readonly schema: string
  /** Every lock held on the session is gone: its connection closed or stopped answering. */
  readonly onLost: (error: HeraldError) => void
  /** Sends a NOTIFY from another session (Herald's publish client), to prove this one is pinned. */
  readonly echo: (channel: string, payload: string) => Promise<void>
}

/** A session that holds locks: its client and the one backend that must answer every statement. */
interface Pinned {
  readonly client: Sql
  readonly backendPid: number
}

const NOT_PINNED_HINT =
  'it probably goes through a transaction pooler (PgBouncer in transaction mode), where two instances could hold one lock: give Locks a direct or session-mode `lockConnection`'

/**
 * The one session that holds this process's advisory locks: a dedicated `max: 1` client
 * (session locks live and die with their backend, so the connection must never be swapped
 * under them). Its loss releases every lock at once on the server; this class turns that into
 * `onLost`, found by the connection closing or, for a half-open one, by a heartbeat that runs
 * while any lock is held.
 */
export class HolderSession {
  readonly #options: HolderSessionOptions
  readonly #tokens: string
  #client: Sql | undefined
  /** The session being opened and proven, shared by concurrent first locks. */
  #opening: Promise<Pinned> | undefined
  #backendPid = 0
  #heartbeat: Heartbeat | undefined
  #held = 0
  readonly #echoChannel = `herald_pin_${randomBytes(9).toString('hex')}`
  #echo: { readonly payload: string; readonly arrived: Deferred<void> } | undefined
  #closed = false

  constructor(options: HolderSessionOptions) {
    this.#options = options
    this.#tokens = `${quoteIdentifier(options.schema)}.lock_tokens`
  }

  /**
   * Takes the lock if free and returns its fencing token. The lock and the token are one
   * statement: only a holder increments a name's token, so tokens rise in acquisition order.
   */
  async tryLock(key: bigint, name: string): Promise<bigint | undefined> {
    const { client, backendPid } = await this.#session()
    let rows: { token: string; pid: number }[]
    try {
      rows = await client<{ token: string; pid: number }[]>`
        with attempt as (select pg_try_advisory_lock(${key.toString()}::bigint) as locked)
        insert into ${client.unsafe(this.#tokens)} as t (name, token)
        select ${name}::text, 1 from attempt where locked
        on conflict (name) do update set token = t.token + 1, acquired_at = now()
        returning token::text as token, pg_backend_pid() as pid`
    } catch (error) {
      // A session lock survives its statement's failure: give it back if it was taken.
      await client`select pg_advisory_unlock(${key.toString()}::bigint)`.catch(() => {})
      throw error
    }
    const token = rows[0]?.token
    if (token === undefined) return undefined
    if (rows[0]?.pid !== backendPid) {
      // Taken on a backend this session does not own: someone else's session may hold it next.
      await client`select pg_advisory_unlock(${key.toString()}::bigint)`.catch(() => {})
      const error = this.#notPinned(
        `the lock was taken on backend ${String(rows[0]?.pid)}, not ${backendPid}`,
      )
      this.#lose(client, error)
      throw error
    }
    if (this.#client !== client) {
      // The session was lost or closed while the statement ran (postgres.js may even have run
      // it on a fresh backend that is being ended): whatever was taken is not ours to keep.
      await client`select pg_advisory_unlock(${key.toString()}::bigint)`.catch(() => {})
      return undefined
    }
    this.#held++
    this.#watch(client)
    return BigInt(token)
  }

  /** Unlocks; resolves once the server has let go, so a waiter woken after it finds it free. */
  /**
   * Unlocks; resolves once the server has let go, so a waiter woken after it finds it free. A
   * session that does not answer within `heartbeatMs` is given up (the server frees its locks
   * when it notices), so a release never hangs on a half-open connection.
   */
  async unlock(key: bigint, announce?: (session: Sql) => Promise<void>): Promise<void> {
    const client = this.#client
    if (client === undefined) return
    // The announcement is queued right behind the unlock on the same connection: it runs only
    // after the unlock has taken effect, yet both cost a single round trip.
    const unlocked = client`select pg_advisory_unlock(${key.toString()}::bigint)`.execute()
    const announced = announce?.(client)
    try {
      await raceWait(
        Promise.all([unlocked, announced]),
        { timeoutMs: this.#options.heartbeatMs },
        systemClock,
        'unlock',
      )
    } catch (error) {
      this.#lose(
        client,
        new HeraldError('LOCK_LOST', 'the lock session did not answer the unlock', { cause: error }),
      )
      throw error
    } finally {
      if (this.#client === client) {
        this.#held = Math.max(0, this.#held - 1)
        if (this.#held === 0) this.#stopWatching()
      }
    }
  }

  async close(): Promise<void> {
    this.#closed = true
    this.#stopWatching()
    const client = this.#client
    this.#client = undefined
    this.#held = 0
    await client?.end({ timeout: 1 })
  }

  #session(): Promise<Pinned> {
    if (this.#client !== undefined)
      return Promise.resolve({ client: this.#client, backendPid: this.#backendPid })
    this.#opening ??= this.#open().finally(() => (this.#opening = undefined))
    return this.#opening
  }

  /**
   * Opens the session and proves it is pinned to one backend before any lock is taken on it:
   * behind a transaction pooler a NOTIFY from another session never reaches it (the pooler
   * drops what arrives while it is idle), and its statements may land on other backends.
   */
  async #open(): Promise<Pinned> {
    let client: Sql | undefined = undefined
    client = createClient(this.#options.connection, {
      max: 1,
      idle_timeout: 0,
      max_lifetime: null,
      fetch_types: false,
      onnotice: () => {},
      connection: { application_name: `${this.#options.applicationName}-locks` },
      onnotify: (channel: string, payload: string) => {
        if (channel === this.#echoChannel && payload === this.#echo?.payload) this.#echo.arrived.resolve()
      },
      onclose: () => {
        if (client !== undefined) this.#lose(client, new HeraldError('LOCK_LOST', 'the lock session closed'))
      },
    } as Parameters<typeof createClient>[1])
    const { heartbeatMs } = this.#options
    try {
      const [row] = await raceWait(
        client<
          { pid: number }[]
        >`select pg_backend_pid() as pid, ${client.unsafe(DISABLE_SESSION_TIMEOUTS)} as timeouts`,
        { timeoutMs: heartbeatMs * 2 },
        systemClock,
        'lock session',
      )
      await client.unsafe(`listen ${quoteIdentifier(this.#echoChannel)}`)
      const payload = randomBytes(6).toString('hex')
      const arrived = deferred<void>()
      this.#echo = { payload, arrived }
      await raceWait(
        this.#options.echo(this.#echoChannel, payload),
        { timeoutMs: heartbeatMs },
        systemClock,
        'lock session',
      )
      try {
        await raceWait(arrived.promise, { timeoutMs: heartbeatMs }, systemClock, 'lock session')
      } catch (error) {
        if (error instanceof HeraldError && error.code === 'TIMEOUT') {
          throw this.#notPinned(
            `a notification sent to the lock session did not arrive within ${heartbeatMs} ms`,
          )
        }
        throw error
      } finally {
        this.#echo = undefined
      }
      if (this.#closed) throw new HeraldError('CLOSED', 'these Locks are closed')
      this.#client = client
      this.#backendPid = row?.pid ?? 0
      return { client, backendPid: this.#backendPid }
    } catch (error) {
      const opened = client
      client = undefined
      void opened.end({ timeout: 0 }).catch(() => {})
      throw error
    }
  }

  #notPinned(what: string): HeraldError {
    return new HeraldError('NOT_PINNED', `the lock session is not pinned: ${what}; ${NOT_PINNED_HINT}`)
  }

  #watch(client: Sql): void {
    if (this.#heartbeat !== undefined) return
    this.#heartbeat = new Heartbeat({
      intervalMs: this.#options.heartbeatMs / 2,
      timeoutMs: this.#options.heartbeatMs / 2,
      clock: systemClock,
      probe: async () => {
        const [row] = await client<{ pid: number }[]>`select pg_backend_pid() as pid`
        if (row?.pid !== this.#backendPid)
          throw this.#notPinned(`backend ${String(row?.pid)} answered, not ${this.#backendPid}`)
      },
      onBeat: () => {},
      onDead: (error) =>
        this.#lose(
          client,
          new HeraldError('LOCK_LOST', 'the lock session stopped answering', { cause: error }),
        ),
    })
    this.#heartbeat.start()
  }

  #stopWatching(): void {
    this.#heartbeat?.stop()
    this.#heartbeat = undefined
  }

  #lose(client: Sql, error: HeraldError): void {
    if (this.#client !== client) return
    this.#client = undefined
    this.#stopWatching()
    const held = this.#held
    this.#held = 0
    // Never reused: the next lock opens a new session.
    void client.end({ timeout: 0 }).catch(() => {})
    if (held > 0) this.#options.onLost(error)
  }
}
