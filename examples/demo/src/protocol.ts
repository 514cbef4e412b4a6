import { createHash } from 'node:crypto'

/** The two app instances the narrator starts. */
export type InstanceName = 'A' | 'B'

/** Environment variables through which the narrator configures an instance. */
export const ENV = {
  name: 'HERALD_DEMO_NAME',
  url: 'HERALD_DEMO_URL',
  channel: 'HERALD_DEMO_CHANNEL',
  run: 'HERALD_DEMO_RUN',
} as const

/** An order, the demo's business message. */
export interface Order {
  readonly id: number
  readonly item: string
  readonly quantity: number
}

/**
 * What travels on the Herald channel. `run` tells this demo's messages apart from those of
 * another demo sharing the server (DATABASE_URL); `sentAt` is a sub-millisecond wall-clock
 * time, so the receiver can measure the one-way latency (both processes share the clock).
 */
export interface WireMessage {
  readonly run: string
  readonly id: number
  readonly from: InstanceName
  readonly sentAt: number
  readonly order?: Order
  readonly blob?: string
}

/** What the narrator asks an instance to do, over IPC. */
export type Command =
  | { readonly type: 'publish'; readonly id: number; readonly order: Order }
  | { readonly type: 'publish-blob'; readonly id: number; readonly bytes: number }
  | { readonly type: 'close' }

/** Counters an instance reports when it closes. */
export interface FinalStats {
  readonly published: number
  readonly received: number
  readonly notifies: number
  readonly reconnects: number
  readonly downtimeMs: number
}

/** What an instance tells the narrator, over IPC. */
export type Report =
  | { readonly type: 'ready'; readonly backendPid: number; readonly listenerApplicationName: string }
  | { readonly type: 'connected'; readonly backendPid: number; readonly reconnect: boolean }
  | { readonly type: 'disconnected'; readonly code: string; readonly message: string }
  | { readonly type: 'reconnecting'; readonly attempt: number; readonly delayMs: number }
  | { readonly type: 'reconnected'; readonly downtimeMs: number; readonly backendPid: number }
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
  | { readonly type: 'error'; readonly code: string; readonly message: string }
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
    (message['from'] === 'A' || message['from'] === 'B') &&
    typeof message['sentAt'] === 'number'
  )
}
