import {
  createClient,
  Heartbeat,
  HeraldError,
  raceWait,
  quoteIdentifier,
  systemClock,
  type ConnectionConfig,
} from '@herald/core'
import type { Sql } from 'postgres'

export interface HolderSessionOptions {
  readonly connection: ConnectionConfig
  readonly applicationName: string
  readonly heartbeatMs: number
  readonly schema: string
  /** Every lock held on the session is gone: its connection closed or stopped answering. */
  readonly onLost: (error: HeraldError) => void
}

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
  #heartbeat: Heartbeat | undefined
  #held = 0

  constructor(options: HolderSessionOptions) {
    this.#options = options
    this.#tokens = `${quoteIdentifier(options.schema)}.lock_tokens`
  }

  /**
   * Takes the lock if free and returns its fencing token. The lock and the token are one
   * statement: only a holder increments a name's token, so tokens rise in acquisition order.
   */
  async tryLock(key: bigint, name: string): Promise<bigint | undefined> {
    const client = this.#session()
    let rows: { token: string }[]
    try {
      rows = await client<{ token: string }[]>`
        with attempt as (select pg_try_advisory_lock(${key.toString()}::bigint) as locked)
        insert into ${client.unsafe(this.#tokens)} as t (name, token)
        select ${name}, 1 from attempt where locked
        on conflict (name) do update set token = t.token + 1, acquired_at = now()
        returning token::text as token`
    } catch (error) {
      // A session lock survives its statement's failure: give it back if it was taken.
      await client`select pg_advisory_unlock(${key.toString()}::bigint)`.catch(() => {})
      throw error
    }
    const token = rows[0]?.token
    if (token === undefined) return undefined
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
    this.#stopWatching()
    const client = this.#client
    this.#client = undefined
    this.#held = 0
    await client?.end({ timeout: 1 })
  }

  #session(): Sql {
    if (this.#client !== undefined) return this.#client
    let client: Sql | undefined = undefined
    client = createClient(this.#options.connection, {
      max: 1,
      idle_timeout: 0,
      max_lifetime: null,
      fetch_types: false,
      onnotice: () => {},
      connection: { application_name: `${this.#options.applicationName}-locks` },
      onclose: () => {
        if (client !== undefined) this.#lose(client, new HeraldError('LOCK_LOST', 'the lock session closed'))
      },
    })
    this.#client = client
    return client
  }

  #watch(client: Sql): void {
    if (this.#heartbeat !== undefined) return
    this.#heartbeat = new Heartbeat({
      intervalMs: this.#options.heartbeatMs / 2,
      timeoutMs: this.#options.heartbeatMs / 2,
      clock: systemClock,
      probe: () => client`select 1`.then(() => undefined),
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
