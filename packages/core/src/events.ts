import { HeraldError } from './errors.js'

export interface ConnectedEvent {
  /** Server process id of the listener connection (as in `pg_stat_activity.pid`). */
  readonly backendPid: number
  /** False for the connection `start()` opened, true for every later one. */
  readonly reconnect: boolean
}

export interface DisconnectedEvent {
  /** Why the listener connection was lost: closed by the server, a socket error, a missed heartbeat. */
  readonly error: HeraldError
}

export interface ReconnectingEvent {
  /** 1 for the first attempt after a loss. */
  readonly attempt: number
  /** How long Herald waits before this attempt, jitter included, in ms. */
  readonly delayMs: number
  /** What made the previous attempt (or the connection) fail. */
  readonly error: HeraldError
}

export interface ReconnectedEvent {
  /**
   * How long the listener could not receive, in ms. Any notification sent in that window is
   * lost: treat the gap as "anything may have changed" (flush, re-read, re-check).
   */
  readonly downtimeMs: number
  /** Server process id of the new listener connection. */
  readonly backendPid: number
}

/** Events of a `Herald`. Every payload is one object, so fields can be added without a break. */
export interface HeraldEvents {
  /** The listener connection is up and LISTENs on every subscribed channel (first time and after each reconnect). */
  connected: [event: ConnectedEvent]
  /** The listener connection was lost; notifications are not received until `reconnected`. */
  disconnected: [event: DisconnectedEvent]
  /** A reconnect attempt is scheduled. */
  reconnecting: [event: ReconnectingEvent]
  /** The listener is back after a loss and LISTENs on every channel again; fired after `connected`. */
  reconnected: [event: ReconnectedEvent]
  /**
   * A background failure: an invalid notification (`PAYLOAD_INVALID`), a throwing handler
   * (`HANDLER_FAILED`), a failed reconnect (`CONNECTION_FAILED`, `HOT_STANDBY`). Herald keeps
   * working after every one of them.
   */
  error: [error: HeraldError]
}

/** What safeEmit needs of an eventemitter3 emitter (its listener store is read directly). */
export interface Emitting {
  emit(event: string, ...args: unknown[]): boolean
  listenerCount(event: string): number
  removeListener(
    event: string,
    fn?: (...args: never[]) => unknown,
    context?: unknown,
    once?: boolean,
  ): unknown
}

interface Registered {
  readonly fn: (...args: unknown[]) => unknown
  readonly context: unknown
  readonly once: boolean
}

/**
 * Emits so that one throwing listener neither escapes into the loop that emitted (a reconnect,
 * a notification dispatch) nor keeps the listeners after it from running: eventemitter3 stops
 * at the first throw, and a cache that never hears `reconnected` would serve stale entries
 * forever. Each throw is reported as an `error` event. eventemitter3 gives `error` no special
 * meaning, so an error nobody listens for would vanish: it becomes a process warning instead
 * (the first of each code per object, so a long outage does not flood stderr).
 */
export function safeEmit(target: object, name: string, ...args: unknown[]): void {
  const emitter = target as Emitting
  const store = (emitter as unknown as { _events?: Record<string, Registered | Registered[] | undefined> })
    ._events
  if (store === undefined) {
    if (name === 'error' && emitter.listenerCount('error') === 0) return warnUnheard(target, args[0])
    // Not eventemitter3's layout: fall back to its emit, isolating only the loop.
    try {
      emitter.emit(name, ...args)
    } catch (cause) {
      report(emitter, name, cause)
    }
    return
  }
  const entry = store[name] ?? store[`~${name}`]
  if (entry === undefined) {
    if (name === 'error') warnUnheard(target, args[0])
    return
  }
  for (const listener of Array.isArray(entry) ? [...entry] : [entry]) {
    if (listener.once) emitter.removeListener(name, listener.fn, undefined, true)
    try {
      listener.fn.apply(listener.context, args)
    } catch (cause) {
      report(emitter, name, cause)
    }
  }
}

const warned = new WeakMap<object, Set<string>>()

function warnUnheard(target: object, error: unknown): void {
  const code = error instanceof HeraldError ? error.code : 'UNKNOWN'
  const codes = warned.get(target) ?? new Set<string>()
  warned.set(target, codes)
  if (codes.has(code)) return
  codes.add(code)
  const message = error instanceof Error ? error.message : String(error)
  process.emitWarning(
    `${target.constructor.name} ${code}: ${message} (no 'error' listener; later ${code} errors of this object are not shown: add one with .on('error', ...))`,
    { type: 'HeraldWarning', code },
  )
}

function report(emitter: Emitting, name: string, cause: unknown): void {
  if (name === 'error') return
  safeEmit(emitter, 'error', new HeraldError('HANDLER_FAILED', `a '${name}' event listener threw`, { cause }))
}
