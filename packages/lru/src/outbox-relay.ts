import { HeraldError, quoteIdentifier, safeEmit, toConnectionError } from '@herald/core'
import { EventEmitter } from 'eventemitter3'
import type { Sql } from 'postgres'
import { ensureLogTables } from './schema.js'

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
  #started = false
  #closed = false
  #backoffMs = 0
  #relayed = 0
  #looks = 0

  constructor(sql: Sql<Record<string, unknown>>, options: OutboxRelayOptions = {}) {
    super()
    if (typeof sql !== 'function')
      throw new HeraldError('INVALID_OPTION', 'OutboxRelay needs a postgres.js client')
    const schema = options.schema ?? 'herald'
    if (typeof schema !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(schema)) {
      throw new HeraldError(
        'INVALID_OPTION',
        `schema must be a plain identifier, got ${JSON.stringify(schema)}`,
      )
    }
    this.#sql = sql
    this.#schema = schema
    this.#migrate = options.migrate ?? true
    this.#idleMs = positive('idleMs', options.idleMs ?? 5)
    this.#batch = positiveInteger('batch', options.batch ?? 1_000)
    this.#function = `${quoteIdentifier(schema)}.relay_notify_outbox`
  }

  /** Creates the outbox if needed and starts looking. Idempotent. */
  async start(): Promise<void> {
    if (this.#closed) throw new HeraldError('CLOSED', 'the outbox relay was closed')
    if (this.#started) return
    this.#started = true
    if (this.#migrate) {
      try {
        await ensureLogTables(this.#sql, this.#schema)
      } catch (error) {
        this.#started = false
        throw toConnectionError(error, 'creating the outbox failed')
      }
    }
    this.#schedule(0)
  }

  stats(): OutboxRelayStats {
    return { relayed: this.#relayed, looks: this.#looks }
  }

  /** Stops after the look in progress, if any. Rows still in the outbox wait for another relay. */
  async close(): Promise<void> {
    this.#closed = true
    this.#cancelLook?.()
    this.#cancelLook = undefined
    await this.#looking
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
    // setTimeout(0) waits a millisecond: a busy outbox is looked at again at once.
    if (delayMs === 0) {
      const immediate = setImmediate(look)
      this.#cancelLook = () => clearImmediate(immediate)
    } else {
      const timer = setTimeout(look, delayMs)
      this.#cancelLook = () => clearTimeout(timer)
    }
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

function positive(name: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new HeraldError('INVALID_OPTION', `${name} must be a positive finite number, got ${String(value)}`)
  }
  return value
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new HeraldError('INVALID_OPTION', `${name} must be a positive integer, got ${String(value)}`)
  }
  return value
}
