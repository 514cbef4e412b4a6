import { randomBytes } from 'node:crypto'
import type { Sql } from 'postgres'
import { MAX_NOTIFY_BYTES, toFrames } from './chunking.js'
import { encodeEnvelope, envelopeOverheadBytes } from './envelope.js'
import { toConnectionError } from './errors.js'
import { deferred, type Deferred } from './wait.js'
import type { TransactionClient } from './options.js'

interface Pending {
  readonly body: string
  readonly done: Deferred<void>
}

/** Publishes waiting for one channel and kind. */
interface Queue {
  readonly channel: string
  readonly kind: string
  items: Pending[]
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
  readonly #queues = new Map<string, Queue>()
  readonly #idle = new Set<() => void>()
  readonly #overheadByKind = new Map<string, number>()
  readonly stats: PublisherStats = { published: 0, notifies: 0 }

  constructor(sql: Sql<Record<string, unknown>>, origin: string) {
    this.#sql = sql
    this.#origin = origin
  }

  /** Publishes one serialized body, coalesced with others on the same channel and kind. */
  publish(channel: string, kind: string, body: string): Promise<void> {
    const key = `${kind}\n${channel}`
    let queue = this.#queues.get(key)
    if (queue === undefined) {
      queue = { channel, kind, items: [], scheduled: false, inFlight: false }
      this.#queues.set(key, queue)
    }
    const done = deferred<void>()
    queue.items.push({ body, done })
    if (!queue.scheduled && !queue.inFlight) {
      queue.scheduled = true
      const scheduled = queue
      queueMicrotask(() => this.#flush(key, scheduled))
    }
    return done.promise
  }

  /** Publishes inside the caller's transaction: delivered when, and only if, it commits. */
  async publishInTransaction(
    tx: TransactionClient,
    channel: string,
    kind: string,
    bodies: string[],
  ): Promise<void> {
    const frames = this.#frames(kind, bodies)
    try {
      await this.#send(tx, channel, frames)
    } catch (error) {
      throw toConnectionError(error, `publish to ${channel} failed`)
    }
    this.stats.published += bodies.length
  }

  /** Resolves once every accepted publish has been sent (or has failed). */
  drain(): Promise<void> {
    if (this.#queues.size === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idle.add(resolve))
  }

  #flush(key: string, queue: Queue): void {
    queue.scheduled = false
    const items = queue.items
    if (queue.inFlight || items.length === 0) return
    queue.items = []
    queue.inFlight = true
    let sending: Promise<unknown>
    try {
      sending = this.#send(
        this.#sql,
        queue.channel,
        this.#frames(
          queue.kind,
          items.map((item) => item.body),
        ),
      )
    } catch (error) {
      sending = Promise.reject(error)
    }
    sending
      .then(
        () => {
          this.stats.published += items.length
          for (const item of items) item.done.resolve()
        },
        (error: unknown) => {
          const failure = toConnectionError(error, `publish to ${queue.channel} failed`)
          for (const item of items) item.done.reject(failure)
        },
      )
      .finally(() => {
        queue.inFlight = false
        if (queue.items.length > 0) return this.#flush(key, queue)
        this.#queues.delete(key)
        if (this.#queues.size === 0) this.#notifyIdle()
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

  async #send(
    sql: Sql<Record<string, unknown>> | TransactionClient,
    channel: string,
    frames: string[],
  ): Promise<void> {
    this.stats.notifies += frames.length
    if (frames.length === 1) {
      await sql`select pg_notify(${channel}, ${frames[0]})`
      return
    }
    // One statement, so every frame of a chunked message commits together or not at all. The
    // frames travel as one JSON text parameter: postgres.js's text[] encoding mangles some
    // quoted elements, and JSON arrays keep their order.
    await sql`select pg_notify(${channel}, frame) from json_array_elements_text(${JSON.stringify(frames)}::text::json) as frame`
  }
}
