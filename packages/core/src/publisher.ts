import { randomBytes } from 'node:crypto'
import type { Sql } from 'postgres'
import { MAX_NOTIFY_BYTES, toFrames } from './chunking.js'
import { encodeEnvelope, envelopeOverheadBytes } from './envelope.js'
import { toConnectionError } from './errors.js'
import { notifyStatement, sqlLiteral } from './sql-literal.js'
import type { Clock } from './clock.js'
import { deferred, raceWait, type Deferred } from './wait.js'
import type { TransactionRunner } from './transaction-runner.js'

/**
 * Publishes waiting for one channel and kind. They succeed or fail together (one statement
 * carries them), so they share one promise: a busy publisher allocates per batch, not per call.
 */
interface Queue {
  readonly channel: string
  readonly kind: string
  bodies: string[]
  /** The promise of `bodies`; made by the first of them. */
  done: Deferred<void> | undefined
  scheduled: boolean
  inFlight: boolean
}

export interface PublisherStats {
  /** Messages handed to `publish` and committed. */
  published: number
  /** NOTIFY calls made: fewer than `published` when coalesced, more when chunked. */
  notifies: number
}

/**
 * Turns publishes into as few NOTIFYs as fit. Publishes to one channel in the same tick share
 * one envelope; while a statement for a channel is in flight, newer publishes wait and go out
 * together in the next one. That keeps one publisher's messages on a channel in order (two
 * statements on two pool connections could commit in either order) and batches harder exactly
 * when load is high, which is when the server-wide NOTIFY commit lock hurts.
 */
export class Publisher {
  readonly #sql: Sql<Record<string, unknown>>
  readonly #origin: string
  /** By kind, then channel: two lookups cost less than building a key string per publish. */
  readonly #queues = new Map<string, Map<string, Queue>>()
  /** Queues with publishes waiting or in flight. */
  #busy = 0
  readonly #idle = new Set<() => void>()
  readonly #overheadByKind = new Map<string, number>()
  readonly stats: PublisherStats = { published: 0, notifies: 0 }

  /**
   * Whether Herald's statements are prepared (postgres.js's named statements). A pooler in
   * transaction mode without prepared-statement support runs a statement's steps on different
   * backends: "prepared statement does not exist", or a publish that never settles.
   */
  #prepare = true

  readonly #deadline: { readonly timeoutMs: number; readonly clock: Clock }

  constructor(
    sql: Sql<Record<string, unknown>>,
    origin: string,
    deadline: { timeoutMs: number; clock: Clock },
  ) {
    this.#sql = sql
    this.#origin = origin
    this.#deadline = deadline
  }

  /** Stops preparing statements, for a publish connection that goes through a proxy. */
  unprepared(): void {
    this.#prepare = false
  }

  get prepared(): boolean {
    return this.#prepare
  }

  /**
   * Publishes one serialized body, coalesced with others on the same channel and kind. Calls
   * that go out in one statement get the same promise.
   */
  publish(channel: string, kind: string, body: string): Promise<void> {
    let byChannel = this.#queues.get(kind)
    if (byChannel === undefined) {
      byChannel = new Map()
      this.#queues.set(kind, byChannel)
    }
    let queue = byChannel.get(channel)
    if (queue === undefined) {
      queue = { channel, kind, bodies: [], done: undefined, scheduled: false, inFlight: false }
      byChannel.set(channel, queue)
      this.#busy++
    }
    queue.bodies.push(body)
    queue.done ??= deferred()
    if (!queue.scheduled && !queue.inFlight) {
      queue.scheduled = true
      const scheduled = queue
      queueMicrotask(() => this.#flush(scheduled))
    }
    return queue.done.promise
  }

  /** Publishes inside the caller's transaction: delivered when, and only if, it commits. */
  async publishInTransaction(
    tx: TransactionRunner,
    channel: string,
    kind: string,
    bodies: string[],
  ): Promise<void> {
    const frames = this.#frames(kind, bodies)
    this.stats.notifies += frames.length
    try {
      // One statement for one frame or many, with `$n` parameters every driver takes: every
      // frame of a chunked message commits with the transaction or not at all.
      await this.#withDeadline(
        tx.query(
          `select count(*)::text as sent
           from json_array_elements_text($2::text::json) as frame, pg_notify($1::text, frame)`,
          [channel, JSON.stringify(frames)],
        ),
        channel,
      )
    } catch (error) {
      throw toConnectionError(error, `publish to ${channel} failed`)
    }
    this.stats.published += bodies.length
  }

  /** Resolves once every accepted publish has been sent (or has failed). */
  drain(): Promise<void> {
    if (this.#busy === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idle.add(resolve))
  }

  #flush(queue: Queue): void {
    queue.scheduled = false
    const { bodies, done } = queue
    if (queue.inFlight || done === undefined) return
    queue.bodies = []
    queue.done = undefined
    queue.inFlight = true
    let sending: Promise<unknown>
    try {
      sending = this.#withDeadline(
        this.#send(this.#sql, queue.channel, this.#frames(queue.kind, bodies)),
        queue.channel,
      )
    } catch (error) {
      sending = Promise.reject(error)
    }
    sending
      .then(
        () => {
          this.stats.published += bodies.length
          done.resolve()
        },
        (error: unknown) => done.reject(toConnectionError(error, `publish to ${queue.channel} failed`)),
      )
      .finally(() => {
        queue.inFlight = false
        if (queue.bodies.length > 0) return this.#flush(queue)
        this.#queues.get(queue.kind)?.delete(queue.channel)
        if (--this.#busy === 0) this.#notifyIdle()
      })
      .catch(() => {})
  }

  #notifyIdle(): void {
    for (const resolve of this.#idle) resolve()
    this.#idle.clear()
  }

  /** Packs bodies into envelopes of at most one NOTIFY each; a body too big alone is chunked. */
  #frames(kind: string, bodies: readonly string[]): string[] {
    const overhead = this.#overhead(kind)
    const frames: string[] = []
    let batch: string[] = []
    let batchBytes = overhead
    const seal = (): void => {
      if (batch.length > 0) frames.push(encodeEnvelope(this.#origin, kind, batch))
      batch = []
      batchBytes = overhead
    }
    for (const body of bodies) {
      const bytes = Buffer.byteLength(body, 'utf8') + 1
      if (overhead + bytes > MAX_NOTIFY_BYTES) {
        seal()
        frames.push(...toFrames(encodeEnvelope(this.#origin, kind, [body]), this.#nextMessageId()))
        continue
      }
      if (batchBytes + bytes > MAX_NOTIFY_BYTES) seal()
      batch.push(body)
      batchBytes += bytes
    }
    seal()
    return frames
  }

  /** A statement that never settles (a pooler that lost it, a half-open socket) must not hang its callers. */
  #withDeadline<T>(statement: Promise<T>, channel: string): Promise<T> {
    const { timeoutMs, clock } = this.#deadline
    return raceWait(statement, { timeoutMs }, clock, `publish to ${channel}`)
  }

  #overhead(kind: string): number {
    let bytes = this.#overheadByKind.get(kind)
    if (bytes === undefined) {
      bytes = envelopeOverheadBytes(this.#origin, kind)
      this.#overheadByKind.set(kind, bytes)
    }
    return bytes
  }

  #nextMessageId(): string {
    // Random, not a counter: a predictable id lets anyone pre-send a frame under it.
    return randomBytes(9).toString('base64url')
  }

  async #send(sql: Sql<Record<string, unknown>>, channel: string, frames: string[]): Promise<void> {
    this.stats.notifies += frames.length
    if (!this.#prepare) {
      // Behind a proxy: one simple-protocol statement, no parameters (see notifyStatement).
      await sql.unsafe(
        frames.length === 1
          ? notifyStatement(channel, frames[0]!)
          : `select pg_notify(${sqlLiteral(channel)}, frame) from json_array_elements_text(${sqlLiteral(JSON.stringify(frames))}::json) as frame`,
      )
      return
    }
    if (frames.length === 1) {
      await sql.unsafe('select pg_notify($1::text, $2::text)', [channel, frames[0]!], { prepare: true })
      return
    }
    // One statement, so every frame of a chunked message commits together or not at all. The
    // frames travel as one JSON text parameter: postgres.js's text[] encoding mangles some
    // quoted elements, and JSON arrays keep their order.
    await sql.unsafe(
      'select pg_notify($1::text, frame) from json_array_elements_text($2::text::json) as frame',
      [channel, JSON.stringify(frames)],
      { prepare: true },
    )
  }
}
