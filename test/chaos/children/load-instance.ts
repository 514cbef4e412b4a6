// One instance of the load case: `load-instance.ts <url> <index> <processes> <cache> <keysPerProcess> <intervalMs>`.
// Spawned with an IPC channel (test/chaos/load-support.ts). Messages to the parent:
// ready → (parent: go) → published → (parent: finish) → result. See load.test.ts for the method.
import { Herald, type MessageHandler } from '@herald/core'
import { InvalidatingCache } from '@herald/lru'
import type { LoadChildMessage, LoadParentMessage } from '../load-support.js'

const [
  url = '',
  indexArg = '0',
  processesArg = '8',
  cacheName = '',
  perProcessArg = '0',
  intervalArg = '40',
] = process.argv.slice(2)
const index = Number(indexArg)
const processes = Number(processesArg)
const perProcess = Number(perProcessArg)
const intervalMs = Number(intervalArg)
const POLL_MS = 500

const send = (message: LoadChildMessage): void => void process.send?.(message)
const unhandled: string[] = []
process.on('unhandledRejection', (reason) => void unhandled.push(String(reason)))

const parentMessages: LoadParentMessage[] = []
let onParentMessage: (() => void) | undefined
process.on('message', (message: LoadParentMessage) => {
  parentMessages.push(message)
  onParentMessage?.()
})
async function fromParent(type: LoadParentMessage['type']): Promise<void> {
  while (!parentMessages.some((message) => message.type === type))
    await new Promise<void>((resolve) => (onParentMessage = resolve))
}
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const herald = new Herald({
  connection: url,
  applicationName: `chaos-load-${index}`,
  reconnect: { minDelayMs: 20, maxDelayMs: 250 },
})
await herald.start()

// Instrumentation, not a change of behaviour: the cache's NOTIFY handler is wrapped so that an
// eviction emitted while it runs (synchronously) is known to come from a live message. Every
// other `invalidate` eviction comes from a read of the durable log (a replay or a poll).
let inLiveHandler = 0
const subscribe = herald.subscribe.bind(herald)
herald.subscribe = ((
  channel: string,
  handler: MessageHandler,
  options?: Parameters<Herald['subscribe']>[2],
) =>
  subscribe(
    channel,
    (body, meta) => {
      inLiveHandler++
      try {
        return handler(body, meta)
      } finally {
        inLiveHandler--
      }
    },
    options,
  )) as Herald['subscribe']

const cache = new InvalidatingCache<number>({
  herald,
  name: cacheName,
  max: processes * perProcess + 1_000,
  durable: { pollMs: POLL_MS },
})
await cache.ready()

const own = `p${index}:`
const delivered = new Set<string>()
const recovered = new Set<string>()
const otherEvictions: Record<string, number> = {}
const errors: string[] = []
let flushEvents = 0
let replays = 0
let replayEventRows = 0
cache.on('evict', ({ key, reason }) => {
  if (key.startsWith(own)) return
  if (reason !== 'invalidate') {
    otherEvictions[reason] = (otherEvictions[reason] ?? 0) + 1
    return
  }
  // Each pre-set key is evicted (and so reported) at most once: a second apply finds it gone.
  if (inLiveHandler > 0) delivered.add(key)
  else recovered.add(key)
})
cache.on('flush', () => void flushEvents++)
cache.on('replay', ({ rows }) => {
  replays++
  replayEventRows += rows
})
cache.on('error', (error) => void errors.push(error.code))
herald.on('error', (error) => void errors.push(error.code))

// Every other process's keys are cached here before anyone publishes, so each of their
// invalidations is observable as exactly one eviction.
let notStored = 0
for (let other = 0; other < processes; other++) {
  if (other === index) continue
  for (let seq = 0; seq < perProcess; seq++) if (!cache.set(`p${other}:${seq}`, seq)) notStored++
}
const before = cache.stats()
send({ type: 'ready', index, preset: cache.size, notStored })

await fromParent('go')
// A steady stream of plain invalidations (no transaction), each retried until it went through.
const started = Date.now()
let retries = 0
for (let seq = 0; seq < perProcess; seq++) {
  const due = started + seq * intervalMs
  if (due > Date.now()) await sleep(due - Date.now())
  for (;;) {
    try {
      await cache.invalidate(`${own}${seq}`)
      break
    } catch {
      retries++
      await sleep(20)
    }
  }
}
send({ type: 'published', index, sent: perProcess, retries, publishMs: Date.now() - started })

await fromParent('finish')
// Every publisher has stopped and the faults have ended: wait until this instance is connected
// and live again, then at least two poll periods, so a final read of the log has run.
const finishAt = Date.now()
while (!(herald.connected && cache.stats().live)) await sleep(20)
const [sqlRows] = await Promise.all([
  herald.sql<{ keys: string[] | null }[]>`
    select keys from herald.cache_invalidations where cache = ${cacheName}`,
  sleep(2 * POLL_MS + 100),
])
const expected = new Set<string>()
for (const row of sqlRows) for (const key of row.keys ?? []) if (!key.startsWith(own)) expected.add(key)
// Anything still missing after the wait above gets a few more poll periods before it is lost.
const deadline = Date.now() + 6 * POLL_MS
const applied = (key: string) => delivered.has(key) || recovered.has(key)
while (![...expected].every(applied) && Date.now() < deadline) await sleep(50)
const after = cache.stats()
const lostKeys = [...expected].filter((key) => !applied(key))
const unexpected = [...delivered, ...recovered].filter((key) => !expected.has(key))
send({
  type: 'result',
  index,
  sentByOthers: expected.size,
  delivered: delivered.size,
  recovered: recovered.size,
  lost: expected.size - delivered.size - recovered.size,
  lostSample: lostKeys.slice(0, 5),
  unexpected: unexpected.length,
  invalidationsReceived: after.invalidationsReceived - before.invalidationsReceived,
  replayedRows: after.replayedRows - before.replayedRows,
  flushes: after.flushes - before.flushes,
  flushEvents,
  replays,
  replayEventRows,
  otherEvictions,
  errors: [...new Set(errors)],
  unhandled,
  finalWaitMs: Date.now() - finishAt,
})
await cache.close()
await herald.close()
process.disconnect?.()
