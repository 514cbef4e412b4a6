import {
  assertPlainIdentifier,
  HeraldError,
  quoteIdentifier,
  raceWait,
  safeEmit,
  systemClock,
  toConnectionError,
} from '@herald/core'
import { EventEmitter } from 'eventemitter3'
import type { Sql } from 'postgres'
import { later } from './later.js'
import { ensureOutbox } from './schema.js'

export interface OutboxRelayOptions {
  /** Schema of the outbox (the triggers' `relay.schema`). @default 'herald' */
  schema?: string
  /** Create the outbox on first use. @default true */
  migrate?: boolean
  /** How long to wait after finding the outbox empty, in ms: the delay a message waits at most when idle. @default 5 */
  idleMs?: number
  /** Rows sent per statement (one transaction, one take of the NOTIFY lock). @default 1000 */
  batch?: number
}

export interface OutboxRelayStats {
  /** Messages sent. */
  readonly relayed: number
  /** Statements run (each one look at the outbox). */
  readonly looks: number
}

export interface OutboxRelayEvents {
  /** A look failed (the relay keeps trying, backing off up to a second). */
  error: [error: HeraldError]
}

/** After a failed look the next waits this long, doubling up to {@link MAX_BACKOFF_MS}. */
const FIRST_BACKOFF_MS = 50
const MAX_BACKOFF_MS = 1_000
const CLOSE_TIMEOUT_MS = 5_000
/** A minute between looks is already a relay nobody waits for. */
const MAX_IDLE_MS = 60_000
/** Rows per look: one transaction's NOTIFYs, kept well inside PostgreSQL's integer argument. */
const MAX_BATCH = 100_000

/**
 * Sends what relay-mode invalidation triggers wrote to `<schema>.notify_outbox`: each look is
 * one statement (`relay_notify_outbox`) that deletes up to `batch` committed rows and NOTIFYs
 * them in the same transaction, so a row is sent exactly when its delete commits, and writers
 * never take the NOTIFY commit lock themselves. Several relays (one per instance, say) share
 * the work: each look takes rows the others have not locked. It looks again at once after
 * finding rows, and `idleMs` after finding none.
 */
export class OutboxRelay extends EventEmitter<OutboxRelayEvents> implements AsyncDisposable {
  readonly #sql: Sql<Record<string, unknown>>
  readonly #schema: string
  readonly #migrate: boolean
  readonly #idleMs: number
  readonly #batch: number
  readonly #function: string
  #cancelLook: (() => void) | undefined
  #looking: Promise<void> | undefined
  #starting: Promise<void> | undefined
  #closed = false
  #backoffMs = 0
  #relayed = 0
  #looks = 0

  constructor(sql: Sql<Record<string, unknown>>, options: OutboxRelayOptions = {}) {
    super()
    if (typeof sql !== 'function')
      throw new HeraldError('INVALID_OPTION', 'OutboxRelay needs a postgres.js client')
    const schema = assertPlainIdentifier('schema', options.schema ?? 'herald')
    const migrate = options.migrate ?? true
    if (typeof migrate !== 'boolean') {
      throw new HeraldError('INVALID_OPTION', `migrate must be true or false, got ${String(migrate)}`)
    }
    this.#sql = sql
    this.#schema = schema
    this.#migrate = migrate
    this.#idleMs = bounded('idleMs', options.idleMs ?? 5, MAX_IDLE_MS)
    this.#batch = bounded('batch', options.batch ?? 1_000, MAX_BATCH)
    if (!Number.isSafeInteger(this.#batch)) {
      throw new HeraldError('INVALID_OPTION', `batch must be an integer, got ${String(this.#batch)}`)
    }
    this.#function = `${quoteIdentifier(schema)}.relay_notify_outbox`
  }

  /** Creates the outbox if needed and starts looking. Idempotent; concurrent calls share one start. */
  start(): Promise<void> {
    if (this.#closed) return Promise.reject(new HeraldError('CLOSED', 'the outbox relay was closed'))
    this.#starting ??= this.#start().catch((error: unknown) => {
      this.#starting = undefined
      throw error
    })
    return this.#starting
  }

  async #start(): Promise<void> {
    if (this.#migrate) {
      try {
        await ensureOutbox(this.#sql, this.#schema)
      } catch (error) {
        throw toConnectionError(error, 'creating the outbox failed')
      }
    }
    this.#schedule(0)
  }

  stats(): OutboxRelayStats {
    return { relayed: this.#relayed, looks: this.#looks }
  }

  /**
   * Stops after the look in progress, if any (waiting for it at most 5 s: a look stuck on a
   * lock or a dead connection must not hold close() up). Rows still in the outbox wait for
   * another relay.
   */
  async close(): Promise<void> {
    this.#closed = true
    this.#cancelLook?.()
    this.#cancelLook = undefined
    if (this.#looking === undefined) return
    await raceWait(
      this.#looking,
      { timeoutMs: CLOSE_TIMEOUT_MS },
      systemClock,
      'closing the outbox relay',
    ).catch(() => {})
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  #schedule(delayMs: number): void {
    if (this.#closed) return
    const look = (): void => {
      this.#cancelLook = undefined
      this.#looking = this.#look().finally(() => {
        this.#looking = undefined
      })
    }
    // A busy outbox is looked at again at once; the relay does not keep a finished process alive.
    this.#cancelLook = later(look, delayMs)
  }

  async #look(): Promise<void> {
    this.#looks++
    let sent: number
    try {
      const [row] = await this.#sql<{ sent: number }[]>`
        select ${this.#sql.unsafe(this.#function)}(${this.#batch}::int) as sent`
      sent = row?.sent ?? 0
      this.#backoffMs = 0
    } catch (error) {
      safeEmit(this, 'error', toConnectionError(error, 'relaying the notify outbox failed'))
      this.#backoffMs = Math.min(Math.max(this.#backoffMs * 2, FIRST_BACKOFF_MS), MAX_BACKOFF_MS)
      this.#schedule(this.#backoffMs)
      return
    }
    this.#relayed += sent
    // Rows found: more may be waiting (or be written right now by busy writers).
    this.#schedule(sent > 0 ? 0 : this.#idleMs)
  }
}

function bounded(name: string, value: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > max) {
    throw new HeraldError(
      'INVALID_OPTION',
      `${name} must be a number above 0 and at most ${max}, got ${String(value)}`,
    )
  }
  return value
}
