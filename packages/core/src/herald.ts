import { randomBytes } from 'node:crypto'
import { EventEmitter } from 'eventemitter3'
import type { Sql } from 'postgres'
import { backoffDelay } from './backoff.js'
import { assertChannelName } from './channel-name.js'
import { ChunkAssembler, isChunkFrame } from './chunking.js'
import { assertKind, decodeEnvelope, DEFAULT_KIND, serializeBody, type Envelope } from './envelope.js'
import { HeraldError } from './errors.js'
import { safeEmit, type HeraldEvents } from './events.js'
import { createClient } from './create-client.js'
import { assertWaitOptions, raceWait, type WaitOptions } from './wait.js'
import { ListenerConnection } from './listener-connection.js'
import { LocalPorts } from './proxy-detection.js'
import { notifyStatement } from './sql-literal.js'
import { resolveOptions, type ConnectionConfig, type HeraldOptions, type ResolvedOptions } from './options.js'
import { toTransactionRunner, type TransactionClient } from './transaction-runner.js'
import { Publisher } from './publisher.js'
import { Subscription, type MessageHandler, type MessageMeta } from './subscription.js'

export interface SubscribeOptions extends WaitOptions {
  /**
   * How many calls of an async handler may run at once; further messages queue in order.
   * `1` processes one message at a time. @default Infinity
   */
  concurrency?: number
}

export interface PublishOptions {
  /**
   * The app's open transaction, from whatever driver or ORM it uses (see
   * {@link TransactionClient}): the message is delivered when, and only if, it commits.
   */
  tx?: TransactionClient
  /** Carried as `meta.kind`, for consumers that multiplex message types on a channel. @default 'message' */
  kind?: string
}

export interface HeraldStats {
  /** The listener connection is up and LISTENing. */
  readonly connected: boolean
  /** Server process id of the listener connection. */
  readonly backendPid: number | undefined
  /** Successful reconnects since `start()`. */
  readonly reconnects: number
  /** Time spent disconnected since `start()`, in ms (ongoing outage included). */
  readonly downtimeMs: number
  /** Notifications received (chunk frames count once each). */
  readonly notifications: number
  /** Messages delivered to subscriptions (a coalesced notification holds several). */
  readonly received: number
  /** Messages published and committed. */
  readonly published: number
  /** NOTIFY calls made: fewer than `published` when coalesced, more when chunked. */
  readonly notifies: number
  /** Notifications refused as `PAYLOAD_INVALID`. */
  readonly invalid: number
  /** Handler calls that threw or rejected. */
  readonly handlerErrors: number
  /** Channels LISTENed. */
  readonly channels: number
  /** Live subscriptions. */
  readonly subscriptions: number
  /** Chunked messages partly received. */
  readonly partialMessages: number
  /** `Date.now()`-style time of the last answered heartbeat. */
  readonly lastHeartbeatAt: number | undefined
  /** Round trip of the last heartbeat, in ms. */
  readonly heartbeatRoundTripMs: number | undefined
  /**
   * Whether Herald prepares its publish statements: false when its own publish connection
   * reaches the server through a proxy (a pooler in transaction mode cannot run prepared ones).
   */
  readonly preparedStatements: boolean
}

/** What `closeWith` ties to a Herald. */
export interface Closable {
  close(): Promise<void>
}

type State = 'idle' | 'starting' | 'started' | 'closing' | 'closed'

/**
 * The process's one connection to "something changed" on PostgreSQL: a single dedicated
 * LISTEN connection shared by every channel, cache, lock and config store, that reconnects
 * forever and says so (`disconnected`, `reconnected`), and a publisher that coalesces,
 * chunks and, inside a transaction, delivers on commit only.
 */
export class Herald extends EventEmitter<HeraldEvents> implements AsyncDisposable {
  /** Id carried by every message this Herald publishes; `meta.self` compares against it. */
  readonly origin: string
  readonly #options: ResolvedOptions
  readonly #channels = new Map<string, Set<Subscription<unknown>>>()
  readonly #assembler: ChunkAssembler
  #listener: ListenerConnection | undefined
  #publisher: Publisher | undefined
  #ownSql: Sql<Record<string, unknown>> | undefined
  #state: State = 'idle'
  #starting: Promise<void> | undefined
  #startAbort: AbortController | undefined
  #closing: Promise<void> | undefined
  readonly #dependents = new Set<Closable>()
  #notifications = 0
  #received = 0
  #invalid = 0
  #handlerErrors = 0
  #downtimeMs = 0
  #disconnectedAt: number | undefined

  constructor(options: HeraldOptions) {
    super()
    this.#options = resolveOptions(options)
    this.origin = randomBytes(6)
      .toString('base64url')
      .replaceAll(/[^A-Za-z0-9]/g, 'x')
    this.#assembler = new ChunkAssembler({ now: () => this.#options.clock.now() })
  }

  /**
   * Opens the listener connection. Transient failures (server still starting, refused
   * connection) are retried until `timeoutMs`; a wrong password, unknown database or a hot
   * standby reject at once. Idempotent while starting or started.
   * @throws HeraldError `CONNECTION_FAILED`, `HOT_STANDBY`, `TIMEOUT`, `ABORTED`, `CLOSED`
   */
  start(options: WaitOptions = {}): Promise<void> {
    if (this.#state === 'closing' || this.#state === 'closed') return Promise.reject(closedError())
    if (this.#starting !== undefined) return this.#starting
    try {
      assertWaitOptions(options)
    } catch (error) {
      return Promise.reject(error)
    }
    this.#state = 'starting'
    this.#starting = this.#start(options)
    return this.#starting
  }

  async #start(options: WaitOptions): Promise<void> {
    const { sql, connection, publishPoolSize, applicationName, connectTimeoutMs } = this.#options
    const listener = new ListenerConnection(this.#options, {
      notification: (channel, payload) => this.#dispatch(channel, payload),
      connected: ({ backendPid, reconnect, downtimeMs }) => {
        if (this.#disconnectedAt !== undefined) this.#downtimeMs += downtimeMs
        this.#disconnectedAt = undefined
        this.#emit('connected', { backendPid, reconnect })
        if (reconnect) this.#emit('reconnected', { downtimeMs, backendPid })
      },
      disconnected: (error) => {
        this.#disconnectedAt = this.#options.clock.now()
        // Chunks of a message cut by the gap will never complete.
        this.#assembler.clear()
        this.#emit('disconnected', { error })
      },
      reconnecting: (event) => this.#emit('reconnecting', event),
      error: (error) => this.#emitError(error),
      echo: async (channel, payload) => {
        // No parameters: the publish connection may go through a pooler (see notifyStatement).
        await this.sql.unsafe(notifyStatement(channel, payload))
      },
    })
    this.#listener = listener
    const localPorts = new LocalPorts(connectTimeoutMs)
    if (sql === undefined && connection !== undefined) {
      this.#ownSql = createClient(connection, {
        max: publishPoolSize,
        onnotice: () => {},
        connect_timeout: Math.ceil(connectTimeoutMs / 1000),
        backoff: (retries: number) => backoffDelay(retries - 1, this.#options.reconnect) / 1000,
        connection: { application_name: `${applicationName}-publisher` },
        socket: localPorts.socket,
      } as Parameters<typeof createClient>[1])
    }
    const publisher = new Publisher((sql ?? this.#ownSql) as Sql<Record<string, unknown>>, this.origin, {
      timeoutMs: this.#options.publishTimeoutMs,
      clock: this.#options.clock,
    })
    this.#publisher = publisher
    // Herald's own publish client prepares its statements unless a proxy is in between (a
    // transaction pooler cannot run them); the app's own `sql` keeps the app's `prepare` choice.
    const ownSql = this.#ownSql
    const detecting =
      ownSql === undefined
        ? Promise.resolve()
        : raceWait(localPorts.proxied(ownSql), { timeoutMs: connectTimeoutMs }, this.#options.clock, 'start')
            .then((proxied) => {
              if (proxied) publisher.unprepared()
            })
            .catch(() => {})
    // close() during start() must not wait out the retries.
    this.#startAbort = new AbortController()
    const signal =
      options.signal === undefined
        ? this.#startAbort.signal
        : AbortSignal.any([options.signal, this.#startAbort.signal])
    try {
      await listener.start({ signal, timeoutMs: options.timeoutMs ?? this.#options.connectTimeoutMs })
      await detecting
    } catch (error) {
      await this.#release(new HeraldError('NOT_STARTED', 'start() failed; call it again', { cause: error }))
      if (this.closed) throw closedError()
      this.#state = 'idle'
      this.#starting = undefined
      throw error
    } finally {
      this.#startAbort = undefined
    }
    if (this.#state === 'starting') this.#state = 'started'
  }

  /**
   * Calls `handler` for every message on `channel`, from any instance (this one included:
   * see `meta.self`). Resolves once the channel is LISTENed, so a message published after
   * that is received.
   * @throws HeraldError `INVALID_CHANNEL`, `NOT_STARTED`, `CLOSED`, `TIMEOUT`, `ABORTED`
   */
  async subscribe<TPayload = unknown>(
    channel: string,
    handler: MessageHandler<TPayload>,
    options: SubscribeOptions = {},
  ): Promise<Subscription<TPayload>> {
    assertChannelName(channel)
    if (typeof handler !== 'function') throw new HeraldError('INVALID_OPTION', 'handler must be a function')
    const concurrency = options.concurrency ?? Number.POSITIVE_INFINITY
    if (typeof concurrency !== 'number' || !(concurrency >= 1))
      throw new HeraldError('INVALID_OPTION', `concurrency must be >= 1, got ${concurrency}`)
    assertWaitOptions(options)
    const listener = this.#requireStarted()
    const subscription = new Subscription<TPayload>(
      channel,
      handler,
      concurrency,
      (error) => {
        this.#handlerErrors++
        this.#emitError(error)
      },
      (sub) => this.#detach(sub as Subscription<unknown>),
    )
    let subscriptions = this.#channels.get(channel)
    if (subscriptions === undefined) {
      subscriptions = new Set()
      this.#channels.set(channel, subscriptions)
    }
    subscriptions.add(subscription as Subscription<unknown>)
    try {
      await listener.listen(channel, options)
    } catch (error) {
      await subscription.unsubscribe()
      throw error
    }
    return subscription
  }

  /**
   * Sends `payload` (any JSON value) to every subscriber of `channel` on every instance.
   * Resolves once the NOTIFY is committed, or, with `{ tx }`, queued in that transaction.
   * @throws HeraldError `INVALID_CHANNEL`, `PAYLOAD_INVALID`, `NOT_STARTED`, `CLOSED`, `CONNECTION_FAILED`, `HOT_STANDBY`
   */
  publish(channel: string, payload: unknown, options: PublishOptions = {}): Promise<void> {
    // Not async: the hot path hands back the publisher's promise instead of wrapping it in one
    // more per call. Every failure still arrives as a rejection.
    try {
      assertChannelName(channel)
      const kind = options.kind === undefined ? DEFAULT_KIND : assertKind(options.kind)
      const body = serializeBody(payload)
      this.#requireStarted()
      const publisher = this.#publisher as Publisher
      if (options.tx !== undefined) {
        const tx = toTransactionRunner(options.tx, `publish to ${channel}`)
        return publisher.publishInTransaction(tx, channel, kind, [body])
      }
      return publisher.publish(channel, kind, body)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /** The listener connection is up and LISTENing on every subscribed channel. */
  get connected(): boolean {
    return this.#listener?.connected ?? false
  }

  /**
   * The postgres.js client Herald publishes with (the `sql` option, or its own), for packages
   * that keep state in tables. Herald's own code runs only single statements on it: postgres.js
   * 3.4.9 can crash the process when a backend dies under `begin()` or `reserve()`
   * (porsager/postgres#1154).
   * @throws HeraldError `NOT_STARTED`
   */
  get sql(): Sql<Record<string, unknown>> {
    const sql = this.#options.sql ?? this.#ownSql
    if (sql === undefined) throw new HeraldError('NOT_STARTED', 'call `await herald.start()` first')
    return sql
  }

  /**
   * Connection settings of the listener (`listenConnection`, else `connection`): a direct
   * connection, for packages that need a session of their own (an advisory-lock holder).
   */
  get listenConnection(): ConnectionConfig {
    return this.#options.listenConnection
  }

  /** `application_name` prefix of this Herald's connections, for packages that open their own. */
  get applicationName(): string {
    return this.#options.applicationName
  }

  /** `close()` was called. */
  get closed(): boolean {
    return this.#state === 'closing' || this.#state === 'closed'
  }

  stats(): HeraldStats {
    const listener = this.#listener?.stats
    const publisher = this.#publisher?.stats
    let subscriptions = 0
    for (const set of this.#channels.values()) subscriptions += set.size
    const ongoing = this.#disconnectedAt === undefined ? 0 : this.#options.clock.now() - this.#disconnectedAt
    return {
      connected: this.connected,
      backendPid: this.#listener?.backendPid,
      reconnects: listener?.reconnects ?? 0,
      downtimeMs: this.#downtimeMs + ongoing,
      notifications: this.#notifications,
      received: this.#received,
      published: publisher?.published ?? 0,
      notifies: publisher?.notifies ?? 0,
      invalid: this.#invalid,
      handlerErrors: this.#handlerErrors,
      channels: this.#channels.size,
      subscriptions,
      partialMessages: this.#assembler.pending,
      lastHeartbeatAt: listener?.lastHeartbeatAt,
      heartbeatRoundTripMs: listener?.heartbeatRoundTripMs,
      preparedStatements: this.#publisher?.prepared ?? true,
    }
  }

  /**
   * Stops receiving, lets publishes already accepted go out, waits up to `closeTimeoutMs` for
   * running handlers, then closes every connection Herald opened. Idempotent; every later call
   * of `subscribe`/`publish` rejects with `CLOSED`.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  /**
   * Ties `resource` to this Herald, so that `close()` closes it first: the caches, config
   * stores and lock managers built on a Herald register themselves, and closing the Herald
   * alone leaves nothing that keeps the process alive. Returns the function that unties it
   * (call it from the resource's own `close()`).
   */
  closeWith(resource: Closable): () => void {
    if (this.#closing === undefined) this.#dependents.add(resource)
    return () => {
      this.#dependents.delete(resource)
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  async #close(): Promise<void> {
    const { clock, closeTimeoutMs } = this.#options
    // Before anything of ours goes: a lock manager still publishes its releases through us.
    const dependents = [...this.#dependents]
    this.#dependents.clear()
    const closed = Promise.all(dependents.map((dependent) => dependent.close().catch(() => {})))
    await raceWait(closed, { timeoutMs: closeTimeoutMs }, clock, 'close').catch(() => {})
    const wasStarting = this.#starting
    this.#state = 'closing'
    this.#startAbort?.abort(closedError())
    const subscriptions = [...this.#channels.values()].flatMap((set) => [...set])
    for (const subscription of subscriptions) subscription.stop()
    await wasStarting?.catch(() => {})
    const settled = Promise.all([
      this.#publisher?.drain(),
      ...subscriptions.map((subscription) => subscription.settled()),
    ])
    await raceWait(settled, { timeoutMs: closeTimeoutMs }, clock, 'close').catch(() => {})
    this.#channels.clear()
    await this.#release()
    this.#state = 'closed'
    this.removeAllListeners()
  }

  async #release(reason?: HeraldError): Promise<void> {
    const listener = this.#listener
    const ownSql = this.#ownSql
    this.#ownSql = undefined
    await Promise.all([listener?.close(reason), ownSql?.end({ timeout: 1 }).catch(() => {})])
  }

  #requireStarted(): ListenerConnection {
    if (this.#state === 'closing' || this.#state === 'closed') throw closedError()
    if (this.#state === 'idle' || this.#listener === undefined) {
      throw new HeraldError('NOT_STARTED', 'call `await herald.start()` first')
    }
    return this.#listener
  }

  async #detach(subscription: Subscription<unknown>): Promise<void> {
    const subscriptions = this.#channels.get(subscription.channel)
    if (subscriptions === undefined || !subscriptions.delete(subscription)) return
    if (subscriptions.size > 0) return
    this.#channels.delete(subscription.channel)
    if (this.#state === 'started' || this.#state === 'starting')
      await this.#listener?.unlisten(subscription.channel)
  }

  #dispatch(channel: string, payload: string): void {
    this.#notifications++
    const subscriptions = this.#channels.get(channel)
    if (subscriptions === undefined || this.#state === 'closing') return
    let text = payload
    if (isChunkFrame(payload)) {
      const result = this.#assembler.accept(payload, channel)
      if (result.status === 'pending') return
      if (result.status === 'invalid') return this.#refuse(channel, result.error)
      text = result.text
    }
    let envelope: Envelope
    try {
      envelope = decodeEnvelope(text)
    } catch (error) {
      return this.#refuse(channel, error as HeraldError)
    }
    const meta: MessageMeta = {
      channel,
      self: envelope.origin === this.origin,
      origin: envelope.origin,
      kind: envelope.kind,
      receivedAt: Date.now(),
    }
    for (const body of envelope.bodies) {
      this.#received++
      for (const subscription of subscriptions) subscription.deliver(body, meta)
    }
  }

  #refuse(channel: string, error: HeraldError): void {
    this.#invalid++
    this.#emitError(
      new HeraldError(error.code, `${error.message} (channel ${channel}); ignored`, {
        cause: error.cause,
        details: { ...error.details, channel },
      }),
    )
  }

  #emitError(error: HeraldError): void {
    this.#emit('error', error)
  }

  #emit<TName extends keyof HeraldEvents>(name: TName, ...args: HeraldEvents[TName]): void {
    safeEmit(this, name, ...args)
  }
}

function closedError(): HeraldError {
  return new HeraldError('CLOSED', 'this Herald is closed')
}
