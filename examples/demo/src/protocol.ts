import { createHash } from 'node:crypto'
import { z } from 'zod'

/** The three app instances the narrator starts. */
export type InstanceName = 'A' | 'B' | 'C'
export const INSTANCE_NAMES: readonly InstanceName[] = ['A', 'B', 'C']

/** Environment variables through which the narrator configures an instance. */
export const ENV = {
  name: 'HERALD_DEMO_NAME',
  url: 'HERALD_DEMO_URL',
  run: 'HERALD_DEMO_RUN',
} as const

/** The channel of the plain publish/subscribe step. */
export const ORDERS_CHANNEL = 'orders'
/** The channels an instance's one listener carries: its own, then the cache's, the locks', the config store's. */
export const CHANNELS = [ORDERS_CHANNEL, 'cache_invalidation', 'lock_release', 'herald_config'] as const
/** How often lock waiters look for locks freed without a message (a killed holder): `Locks`' default. */
export const LOCK_SWEEP_MS = 1_000

/**
 * Everything a run names on the server, unique per run so that demos (and tests) sharing one
 * server through DATABASE_URL never see each other's rows, keys, locks or config.
 */
export function runNames(run: string) {
  return {
    /** The users table the caches read. */
    table: `herald_demo_users_${run}`,
    /** The `InvalidatingCache` name: caches of one name on different instances invalidate each other. */
    cache: `demo-users-${run}`,
    /** The lock the report step contends for. */
    lock: `demo-report-${run}`,
    /** The `ConfigStore` namespace. */
    namespace: `demo-${run}`,
    /** `applicationName` of an instance's Herald and Locks: `-listener`, `-locks` are appended. */
    applicationName: (name: InstanceName) => `herald-demo-${name.toLowerCase()}-${run}`,
  }
}

/** The demo's configuration, validated by zod on `set` and on every read. */
export const CONFIG_SCHEMA = {
  rateLimit: z.number().int().positive().default(100),
  banner: z.string().max(80).optional(),
}
export type ConfigKeyName = keyof typeof CONFIG_SCHEMA

/** A row of the users table, as the caches hold it. */
export interface User {
  readonly id: number
  readonly name: string
  readonly visits: number
}

export const userKey = (id: number): string => `user:${id}`

/** An order, the plain publish/subscribe step's message. */
export interface Order {
  readonly id: number
  readonly item: string
  readonly quantity: number
}

/**
 * What travels on the orders channel. `run` tells this demo's messages apart from those of
 * another demo sharing the server (DATABASE_URL); `sentAt` is a sub-millisecond wall-clock
 * time, so the receiver can measure the one-way latency (the processes share the clock).
 */
export interface WireMessage {
  readonly run: string
  readonly id: number
  readonly from: InstanceName
  readonly sentAt: number
  readonly order?: Order
  readonly blob?: string
}

/** One key read through the cache. */
export interface ReadResult {
  readonly key: string
  readonly value: User | null
  /** True when the loader ran (a miss), false for a hit. */
  readonly loaded: boolean
  /** How long `getOrLoad` took, in µs. */
  readonly us: number
}

/** What the narrator asks an instance to do, over IPC. */
export type Command =
  | { readonly type: 'publish'; readonly id: number; readonly order: Order }
  | { readonly type: 'publish-blob'; readonly id: number; readonly bytes: number }
  /** `getOrLoad` each key in turn (reported as one `read`). */
  | { readonly type: 'read'; readonly req: number; readonly keys: readonly string[] }
  /** Renames a user with the app's own client, then `invalidate(user:<id>)`. */
  | { readonly type: 'rename'; readonly req: number; readonly id: number; readonly name: string }
  /** `invalidate(key)`, timed. */
  | { readonly type: 'invalidate'; readonly req: number; readonly key: string }
  /** Tries the lock; if it is held elsewhere, reports `lock-busy` and waits for it with `acquire`. */
  | { readonly type: 'lock'; readonly name: string }
  | { readonly type: 'unlock'; readonly name: string }
  | {
      readonly type: 'config-set'
      readonly req: number
      readonly key: ConfigKeyName
      readonly value: unknown
    }
  | { readonly type: 'config-get'; readonly req: number }
  /** Every cached entry and the cache's counters. */
  | { readonly type: 'dump'; readonly req: number }
  | { readonly type: 'close' }

/** Counters an instance reports when it closes. */
export interface FinalStats {
  readonly published: number
  readonly received: number
  readonly reconnects: number
  readonly hits: number
  readonly loads: number
  readonly evicted: number
}

/** What an instance tells the narrator, over IPC. Times (`at`, `sentAt`) are {@link preciseNow}. */
export type Report =
  | {
      readonly type: 'ready'
      readonly backendPid: number
      readonly listenerApplicationName: string
      /** Channels LISTENed on the one listener connection. */
      readonly channels: number
    }
  | { readonly type: 'connected'; readonly backendPid: number; readonly reconnect: boolean }
  | { readonly type: 'disconnected'; readonly code: string; readonly message: string }
  | { readonly type: 'reconnecting'; readonly attempt: number; readonly delayMs: number }
  | {
      readonly type: 'reconnected'
      readonly downtimeMs: number
      readonly backendPid: number
      /** When every channel was LISTENed again. */
      readonly at: number
    }
  | {
      readonly type: 'published'
      readonly id: number
      readonly bytes: number
      readonly sha256: string
      /** NOTIFY statements this publish took: more than one when the message was chunked. */
      readonly notifies: number
    }
  | {
      readonly type: 'received'
      readonly id: number
      readonly from: InstanceName
      readonly latencyUs: number
      readonly bytes: number
      readonly sha256: string
      readonly order?: Order
    }
  | { readonly type: 'read'; readonly req: number; readonly results: readonly ReadResult[] }
  | { readonly type: 'renamed'; readonly req: number; readonly sentAt: number }
  | { readonly type: 'invalidated'; readonly req: number; readonly sentAt: number }
  | { readonly type: 'evict'; readonly key: string; readonly reason: string; readonly at: number }
  | { readonly type: 'flush'; readonly reason: string; readonly at: number }
  | { readonly type: 'lock-busy'; readonly name: string }
  /** `acquire` is parked: a sweep found the lock still held while it waits. */
  | { readonly type: 'lock-waiting'; readonly name: string }
  | {
      readonly type: 'lock-acquired'
      readonly name: string
      readonly token: string
      readonly at: number
    }
  | { readonly type: 'lock-released'; readonly name: string; readonly sentAt: number }
  | {
      readonly type: 'lock-lost'
      readonly name: string
      readonly token: string
      readonly code: string
      readonly at: number
    }
  | { readonly type: 'config-set'; readonly req: number; readonly version: number; readonly sentAt: number }
  | { readonly type: 'config-refused'; readonly req: number; readonly code: string; readonly message: string }
  | {
      readonly type: 'config-change'
      readonly key: string
      readonly value: unknown
      readonly previous: unknown
      readonly version: number
      readonly at: number
    }
  | {
      readonly type: 'config-values'
      readonly req: number
      readonly values: Readonly<Record<string, unknown>>
      readonly version: number
    }
  | {
      readonly type: 'dump'
      readonly req: number
      readonly entries: readonly (readonly [string, User])[]
      readonly live: boolean
    }
  | { readonly type: 'error'; readonly source: string; readonly code: string; readonly message: string }
  | { readonly type: 'closed'; readonly stats: FinalStats }
  | { readonly type: 'failed'; readonly message: string }

export type ReportType = Report['type']
export type ReportOf<TType extends ReportType> = Extract<Report, { type: TType }>

/** Wall-clock time in ms with sub-millisecond precision, comparable across processes of one machine. */
export function preciseNow(): number {
  return performance.timeOrigin + performance.now()
}

/** The hash both ends compute over a message's content, to prove it arrived intact. */
export function contentHash(message: Pick<WireMessage, 'order' | 'blob'>): string {
  const content = message.blob ?? JSON.stringify(message.order ?? null)
  return createHash('sha256').update(content).digest('hex')
}

export function isWireMessage(value: unknown): value is WireMessage {
  if (typeof value !== 'object' || value === null) return false
  const message = value as Record<string, unknown>
  return (
    typeof message['run'] === 'string' &&
    typeof message['id'] === 'number' &&
    (message['from'] === 'A' || message['from'] === 'B' || message['from'] === 'C') &&
    typeof message['sentAt'] === 'number'
  )
}
