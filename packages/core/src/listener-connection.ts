import { randomBytes } from 'node:crypto'
import type net from 'node:net'
import type { Sql } from 'postgres'
import { backoffDelay } from './backoff.js'
import { quoteChannel } from './channel-name.js'
import { HeraldError, sqlState, toConnectionError } from './errors.js'
import { Heartbeat } from './heartbeat.js'
import { createClient } from './create-client.js'
import type { TimerHandle } from './clock.js'
import { openSocket, type SocketTarget } from './internal/socket.js'
import { deferred, raceWait, type Deferred, type WaitOptions } from './wait.js'
import type { ResolvedOptions } from './options.js'

export interface ListenerHandlers {
  notification(channel: string, payload: string): void
  connected(info: { backendPid: number; reconnect: boolean; downtimeMs: number }): void
  disconnected(error: HeraldError): void
  reconnecting(info: { attempt: number; delayMs: number; error: HeraldError }): void
  error(error: HeraldError): void
  /**
   * Sends a NOTIFY from another session (Herald's publish client): a new session proves with it
   * that it receives what others send, which a session behind a transaction pooler does not.
   */
  echo(channel: string, payload: string): Promise<void>
}

/** One physical connection. A lost one is never reused: reconnecting opens a new session. */
interface Session {
  readonly client: Sql
  socket: net.Socket | undefined
  backendPid: number
  /** Channels LISTENed (or being LISTENed) on this session, with the pending command. */
  readonly listening: Map<string, Promise<void>>
  heartbeat: Heartbeat | undefined
  lost: boolean
  /** The delivery check this session waits for (see {@link ListenerHandlers.echo}). */
  echo: { readonly payload: string; readonly arrived: Deferred<void> } | undefined
}

type State = 'idle' | 'starting' | 'live' | 'reconnecting' | 'closed'

// Errors a retry cannot fix: bad password, unknown role or database, a replica.
const PERMANENT_STATES = new Set(['28000', '28P01', '3D000', '25006'])

const NOT_PINNED_HINT =
  'it probably goes through a transaction pooler (PgBouncer in transaction mode), which cannot hold LISTEN: give `listenConnection` a direct or session-pooled URL (or the publish and listen connections reach different databases)'

/**
 * The one dedicated LISTEN connection of a process. It owns its postgres.js client
 * (`max: 1`) instead of using `sql.listen`, which hides disconnects, has no heartbeat and
 * swallows re-LISTEN errors: every guarantee about gaps starts here.
 */
export class ListenerConnection {
  readonly #options: ResolvedOptions
  readonly #on: ListenerHandlers
  /** Channels that should be LISTENed; every new session LISTENs all of them. */
  readonly #desired = new Set<string>()
  #state: State = 'idle'
  #session: Session | undefined
  /** The session being opened, so close() can destroy it too. */
  #opening: Session | undefined
  #live: Deferred<Session> = deferred()
  #attempt = 0
  #reconnectTimer: TimerHandle | undefined
  #lostAt: number | undefined
  #connects = 0
  /** Sessions opened so far; with several hosts, each attempt starts at the next one. */
  #opens = 0
  #reconnects = 0
  #lastHeartbeatAt: number | undefined
  #lastRoundTripMs: number | undefined
  /** This listener's private channel for delivery checks: random, so no user's channel and no other process's. */
  readonly #echoChannel = `herald_pin_${randomBytes(9).toString('hex')}`

  constructor(options: ResolvedOptions, handlers: ListenerHandlers) {
    this.#options = options
    this.#on = handlers
    // Waiters on a Herald that closes before ever connecting are rejected; nobody else awaits this one.
    this.#live.promise.catch(() => {})
  }

  get connected(): boolean {
    return this.#state === 'live'
  }

  get backendPid(): number | undefined {
    return this.#session?.backendPid
  }

  get stats() {
    return {
      reconnects: this.#reconnects,
      lastHeartbeatAt: this.#lastHeartbeatAt,
      heartbeatRoundTripMs: this.#lastRoundTripMs,
    }
  }

  /** Opens the first session, retrying transient failures until `timeoutMs` has passed. */
  async start(options: WaitOptions & { timeoutMs: number }): Promise<void> {
    this.#state = 'starting'
    const { clock } = this.#options
    const started = clock.now()
    const deadline = started + options.timeoutMs
    let lastError: HeraldError | undefined
    const stillFailing = (attempts: number): HeraldError =>
      new HeraldError(
        'CONNECTION_FAILED',
        `${lastError?.message ?? 'could not open the listener connection'} (still failing after ` +
          `${Math.round(clock.now() - started)} ms and ${attempts} attempts; start() retries for timeoutMs, ${options.timeoutMs} ms)`,
        { cause: lastError },
      )
    for (let attempt = 0; ; attempt++) {
      if ((this.#state as State) === 'closed')
        throw new HeraldError('CLOSED', 'Herald was closed while starting')
      const remaining = deadline - clock.now()
      if (remaining <= 0 && lastError) throw stillFailing(attempt)
      const opening = this.#open()
      try {
        const session = await raceWait(
          opening,
          { signal: options.signal, timeoutMs: Math.max(remaining, 1) },
          clock,
          'start',
        )
        this.#goLive(session)
        return
      } catch (error) {
        // An abandoned attempt may still connect: never leave its session open.
        opening.then((session) => this.#dispose(session, false)).catch(() => {})
        if (error instanceof HeraldError && error.code === 'TIMEOUT' && lastError)
          throw stillFailing(attempt + 1)
        if (error instanceof HeraldError && (error.code === 'ABORTED' || error.code === 'TIMEOUT')) {
          const message =
            error.code === 'TIMEOUT' ? `start timed out after ${options.timeoutMs} ms` : error.message
          throw new HeraldError(error.code, message, { cause: lastError ?? error.cause })
        }
        lastError = toConnectionError(error, 'could not open the listener connection')
        if (isPermanent(lastError)) throw lastError
        // Sleep no later than the deadline, then try once more or report.
        const delay = Math.min(backoffDelay(attempt, this.#options.reconnect), deadline - clock.now())
        if (delay > 0) await sleep(clock, delay, options.signal)
      }
    }
  }

  /** Adds a channel; resolves once a live session has LISTENed on it. */
  async listen(channel: string, options: WaitOptions): Promise<void> {
    this.#desired.add(channel)
    for (;;) {
      const session =
        this.#session ?? (await raceWait(this.#live.promise, options, this.#options.clock, 'subscribe'))
      let command = session.listening.get(channel)
      if (command === undefined) {
        command = this.#command(session, `listen ${quoteChannel(channel)}`)
        session.listening.set(channel, command)
      }
      try {
        await raceWait(command, options, this.#options.clock, 'subscribe')
        return
      } catch (error) {
        if (error instanceof HeraldError && (error.code === 'ABORTED' || error.code === 'TIMEOUT'))
          throw error
        // The session died under the LISTEN: the next one LISTENs every desired channel.
        if (!session.lost) throw toConnectionError(error, `LISTEN ${channel} failed`)
        if (this.#state === 'closed') throw new HeraldError('CLOSED', 'Herald is closed')
      }
    }
  }

  /** Removes a channel; UNLISTENs it on the live session. */
  async unlisten(channel: string): Promise<void> {
    this.#desired.delete(channel)
    const session = this.#session
    if (session === undefined || !session.listening.delete(channel)) return
    await this.#command(session, `unlisten ${quoteChannel(channel)}`).catch((error: unknown) => {
      // A lost session forgets its LISTENs by itself; anything else is worth knowing.
      if (!session.lost) this.#on.error(toConnectionError(error, `UNLISTEN ${channel} failed`))
    })
  }

  /**
   * Closes for good. Waiting subscribers are rejected with `reason`: `CLOSED`, or `NOT_STARTED`
   * when a failed `start()` tears the listener down and a later one may succeed.
   */
  async close(reason: HeraldError = new HeraldError('CLOSED', 'Herald is closed')): Promise<void> {
    if (this.#state === 'closed') return
    this.#state = 'closed'
    if (this.#reconnectTimer !== undefined) this.#options.clock.clearTimeout(this.#reconnectTimer)
    this.#reconnectTimer = undefined
    this.#live.reject(reason)
    const sessions = [this.#session, this.#opening].filter((session) => session !== undefined)
    this.#session = undefined
    await Promise.all(sessions.map((session) => this.#dispose(session, session.backendPid !== 0)))
  }

  /** Opens a session: connect, check the server is a primary, LISTEN every desired channel. */
  async #open(): Promise<Session> {
    this.#opens++
    const { listenConnection, connectTimeoutMs, applicationName } = this.#options
    let socket: net.Socket | undefined
    // Assigned once the client exists; the client's callbacks, created first, read it later.
    // eslint-disable-next-line prefer-const
    let session: Session | undefined
    const client = createClient(listenConnection, {
      max: 1,
      idle_timeout: 0,
      max_lifetime: null,
      fetch_types: false,
      connect_timeout: Math.ceil(connectTimeoutMs / 1000),
      // postgres.js 4 retries "too many clients" (53300) inside one attempt, by default up to
      // 20 s apart: at our reconnect pace, the listener is back as soon as a slot frees.
      backoff: (retries: number) => backoffDelay(retries - 1, this.#options.reconnect) / 1000,
      onnotice: () => {},
      connection: { application_name: `${applicationName}-listener` },
      socket: async (target: SocketTarget) => {
        socket = await openSocket(target, connectTimeoutMs, this.#opens)
        if (session !== undefined) session.socket = socket
        return socket
      },
      onnotify: (channel: string, payload: string) => {
        if (session === undefined || session.lost) return
        if (channel === this.#echoChannel) {
          if (payload === session.echo?.payload) session.echo.arrived.resolve()
          return
        }
        this.#on.notification(channel, payload)
      },
      onclose: () => {
        if (session !== undefined)
          this.#lose(session, new HeraldError('CONNECTION_FAILED', 'the listener connection was closed'))
      },
    } as Parameters<typeof createClient>[1])
    session = {
      client,
      socket,
      backendPid: 0,
      listening: new Map(),
      heartbeat: undefined,
      lost: false,
      echo: undefined,
    }
    this.#opening = session
    try {
      // A connect that neither succeeds nor fails (a SYN into the void, a server stuck in
      // startup) must not stall the reconnect loop forever.
      const [row] = await raceWait(
        client<
          { pid: number; standby: boolean }[]
        >`select pg_backend_pid() as pid, pg_is_in_recovery() as standby`,
        { timeoutMs: connectTimeoutMs },
        this.#options.clock,
        'connect',
      )
      if (row === undefined) throw new HeraldError('CONNECTION_FAILED', 'the server answered no row')
      if (row.standby) {
        throw new HeraldError('HOT_STANDBY', 'the server is a hot standby; LISTEN needs the primary', {
          details: { sqlState: '25006' },
        })
      }
      session.backendPid = row.pid
      const channels = [...this.#desired]
      // One round trip for every channel: a reconnect under 1,000 channels stays fast.
      const all = this.#command(
        session,
        [this.#echoChannel, ...channels].map((channel) => `listen ${quoteChannel(channel)}`).join(';'),
      )
      for (const channel of channels) session.listening.set(channel, all)
      await raceWait(all, { timeoutMs: connectTimeoutMs }, this.#options.clock, 'LISTEN')
      await this.#proveDelivery(session)
      if (this.#state === 'closed') throw new HeraldError('CLOSED', 'Herald is closed')
      return session
    } catch (error) {
      session.lost = true
      await this.#dispose(session, false)
      throw error
    } finally {
      if (this.#opening === session) this.#opening = undefined
    }
  }

  /**
   * A session behind a transaction pooler LISTENs on a server backend that the pooler hands to
   * other clients between statements, and drops what arrives while it is idle: every query
   * succeeds and nothing is ever delivered. Only a notification sent by another session and
   * received here proves the session is pinned, so each new session waits for one.
   */
  async #proveDelivery(session: Session): Promise<void> {
    const payload = `${this.#opens}:${randomBytes(6).toString('hex')}`
    const arrived = deferred<void>()
    session.echo = { payload, arrived }
    const { heartbeatMs, clock } = this.#options
    try {
      await raceWait(
        this.#on.echo(this.#echoChannel, payload),
        { timeoutMs: heartbeatMs },
        clock,
        'delivery check',
      )
    } catch (error) {
      // The publish side is down or refuses NOTIFY (a standby): publishes fail loudly on their
      // own, and a listener must not stay down for it. The session is used unproven, and said so.
      if (session.lost) throw error
      session.echo = undefined
      this.#on.error(
        toConnectionError(
          error,
          "the listener's delivery check could not be sent through the publish connection",
        ),
      )
      return
    }
    try {
      await raceWait(arrived.promise, { timeoutMs: heartbeatMs }, clock, 'delivery check')
    } catch (error) {
      if (!(error instanceof HeraldError) || error.code !== 'TIMEOUT' || session.lost) throw error
      throw new HeraldError(
        'NOT_PINNED',
        `the listen connection LISTENs, but a notification sent from another session did not arrive within ${heartbeatMs} ms: ${NOT_PINNED_HINT}`,
        { details: { backendPid: session.backendPid } },
      )
    } finally {
      session.echo = undefined
    }
  }

  /** The heartbeat's probe: a round trip that also checks the backend is still the one that LISTENs. */
  async #probe(session: Session): Promise<void> {
    const [row] = await session.client<{ pid: number }[]>`select pg_backend_pid() as pid`
    if (row?.pid === session.backendPid) return
    const error = new HeraldError(
      'NOT_PINNED',
      `the listen connection now answers from backend ${String(row?.pid)}, not ${session.backendPid} that LISTENs: ${NOT_PINNED_HINT}`,
      { details: { backendPid: session.backendPid, answeredBy: row?.pid } },
    )
    this.#on.error(error)
    throw error
  }

  #goLive(session: Session): void {
    if (this.#state === 'closed') {
      void this.#dispose(session, true)
      return
    }
    const reconnect = this.#connects > 0
    const downtimeMs = this.#lostAt === undefined ? 0 : this.#options.clock.now() - this.#lostAt
    this.#connects++
    if (reconnect) this.#reconnects++
    this.#state = 'live'
    this.#session = session
    this.#attempt = 0
    this.#lostAt = undefined
    session.heartbeat = new Heartbeat({
      intervalMs: this.#options.heartbeatMs / 2,
      timeoutMs: this.#options.heartbeatMs / 2,
      clock: this.#options.clock,
      probe: () => this.#probe(session),
      onBeat: (roundTripMs) => {
        this.#lastHeartbeatAt = this.#options.clock.now()
        this.#lastRoundTripMs = roundTripMs
      },
      onDead: (error) => this.#lose(session, error),
    })
    session.heartbeat.start()
    const live = this.#live
    this.#live = deferred()
    this.#live.promise.catch(() => {})
    live.resolve(session)
    this.#on.connected({ backendPid: session.backendPid, reconnect, downtimeMs })
  }

  #lose(session: Session, error: HeraldError): void {
    if (session.lost) return
    session.lost = true
    void this.#dispose(session, false)
    if (this.#session !== session) return
    this.#session = undefined
    if (this.#state === 'closed') return
    this.#state = 'reconnecting'
    this.#lostAt = this.#options.clock.now()
    this.#on.disconnected(error)
    this.#scheduleReconnect(error)
  }

  #scheduleReconnect(error: HeraldError): void {
    const delayMs = backoffDelay(this.#attempt, this.#options.reconnect)
    this.#attempt++
    this.#on.reconnecting({ attempt: this.#attempt, delayMs, error })
    // Kept alive on purpose: between two sessions this timer is all that holds the process
    // open, and a listening process must not exit because its database blinked.
    this.#reconnectTimer = this.#options.clock.setTimeout(() => void this.#reconnect(), delayMs, true)
  }

  async #reconnect(): Promise<void> {
    this.#reconnectTimer = undefined
    if (this.#state === 'closed') return
    try {
      const session = await this.#open()
      this.#goLive(session)
    } catch (error) {
      if ((this.#state as State) === 'closed') return
      const failure = toConnectionError(error, 'reconnecting the listener failed')
      // Transient refusals (server restarting) are expected while reconnecting; a replica or a
      // rejected password is not, and needs a human.
      if (isPermanent(failure)) this.#on.error(failure)
      this.#scheduleReconnect(failure)
    }
  }

  /** Runs a LISTEN/UNLISTEN/probe command; simple protocol, since identifiers cannot be parameters. */
  #command(session: Session, text: string): Promise<void> {
    return session.client.unsafe(text).then(() => undefined)
  }

  async #dispose(session: Session, graceful: boolean): Promise<void> {
    session.lost = true
    session.heartbeat?.stop()
    if (!graceful) session.socket?.destroy()
    await session.client.end({ timeout: graceful ? 1 : 0 }).catch(() => {})
    session.socket?.destroy()
  }
}

function isPermanent(error: HeraldError): boolean {
  if (error.code === 'HOT_STANDBY' || error.code === 'NOT_PINNED') return true
  const state = sqlState(error.cause) ?? (error.details['sqlState'] as string | undefined)
  return state !== undefined && PERMANENT_STATES.has(state)
}

/** A retry delay that keeps the process alive (a start is awaited) but ends at once on abort. */
function sleep(clock: ResolvedOptions['clock'], ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clock.clearTimeout(timer)
      reject(new HeraldError('ABORTED', 'start was aborted', { cause: signal?.reason }))
    }
    const timer = clock.setTimeout(
      () => {
        signal?.removeEventListener('abort', onAbort)
        resolve()
      },
      ms,
      true,
    )
    if (signal?.aborted === true) onAbort()
    else signal?.addEventListener('abort', onAbort, { once: true })
  })
}
