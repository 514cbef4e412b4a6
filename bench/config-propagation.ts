/**
 * `config.set` on one instance → `change` event on another instance (another process), with
 * Herald's plain publish → subscribe alongside as the floor it is built on. Latency is half
 * the round trip of a ping the receiver echoes back the same way (a config change answered by
 * a config change, a message by a message), timed on one clock.
 *
 * A config change costs more than a message by design: the NOTIFY is only a hint, so the
 * receiver reads the history after its version (one query) before it emits `change`, and the
 * write allocates its version under the namespace's row lock.
 *
 * This file is also the receiver: spawned by `Child` (with an IPC channel) it echoes; run
 * directly it measures against a throwaway server and prints the figures:
 *   node --conditions=@herald/source --import tsx bench/config-propagation.ts
 */
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { ConfigStore } from '@herald/config'
import { Herald, type HeraldError } from '@herald/core'
import { uniqueName } from '@herald/testing'
import { z } from 'zod'
import type { Benchmark, BenchContext, BenchmarkResult, ContenderResult } from './lib/benchmark.js'
import { Child } from './lib/child.js'
import { Echoes } from './lib/echoes.js'
import { summarize } from './lib/stats.js'
import { withTimeout } from './lib/timeout.js'

const SELF = 'bench/config-propagation.ts'
/** Spawning, tsx compiling, connections, the tables' first creation: seconds at most on a slow box. */
const READY_TIMEOUT_MS = 30_000
/** A round trip takes a few milliseconds; one that takes this long was lost, not slow. */
const SAMPLE_TIMEOUT_MS = 5_000

/** Both processes' config: the pinger writes `ping`, the receiver answers with `echo`. */
const schema = {
  ping: z.number().int().nonnegative().default(0),
  echo: z.number().int().nonnegative().default(0),
}

interface Channels {
  /** The config store's namespace. */
  readonly namespace: string
  /** The plain publish contender's channels. */
  readonly ping: string
  readonly echo: string
}

type ToReceiver =
  { readonly type: 'start'; readonly url: string; readonly channels: Channels } | { readonly type: 'stop' }

type FromReceiver =
  | { readonly type: 'ready' }
  /** Pings each contender's receiver saw: anything short of what was sent is a lost change. */
  | { readonly type: 'stopped'; readonly config: number; readonly publish: number }
  | { readonly type: 'failed'; readonly message: string }

interface Contender {
  readonly id: 'config' | 'publish'
  readonly name: string
  readonly label: string
  readonly echoes: Echoes
  send(seq: number): Promise<unknown>
}

export const configPropagation: Benchmark = {
  name: 'config-propagation',
  plan: (context) => `${context.samples} samples per contender after ${context.warmup} warm-up`,
  run,
}

async function run(context: BenchContext): Promise<BenchmarkResult> {
  const channels: Channels = {
    namespace: uniqueName('bench_config'),
    ping: uniqueName('bench_cfg_ping'),
    echo: uniqueName('bench_cfg_echo'),
  }
  const receiver = new Child<ToReceiver, FromReceiver>(SELF)
  const herald = new Herald({ connection: context.url, applicationName: 'bench-config-pinger' })
  const config = new ConfigStore({ herald, schema, namespace: channels.namespace, pollMs: 0 })
  let backgroundError: HeraldError | undefined
  herald.on('error', (error) => (backgroundError ??= error))
  config.on('error', (error) => (backgroundError ??= error))
  try {
    await herald.start()
    await config.start()
    // The receiver starts once the tables exist, so the two do not race to create them.
    receiver.send({ type: 'start', url: context.url, channels })
    const configEchoes = new Echoes()
    config.on('change:echo', ({ value }) => configEchoes.arrive(value))
    const publishEchoes = new Echoes()
    await herald.subscribe<number>(channels.echo, (seq) => publishEchoes.arrive(seq))
    const contenders: Contender[] = [
      {
        id: 'config',
        name: 'ConfigStore',
        label: 'config.set → change event on another process',
        echoes: configEchoes,
        send: (seq) => config.set('ping', seq),
      },
      {
        id: 'publish',
        name: 'Herald',
        label: 'herald.publish → subscribe handler on another process',
        echoes: publishEchoes,
        send: (seq) => herald.publish(channels.ping, seq),
      },
    ]
    await receiver.receive('ready', READY_TIMEOUT_MS)
    const rounds = context.warmup + context.samples
    const latencies = await measure(contenders, context, receiver.failure)
    if (backgroundError !== undefined) throw backgroundError
    receiver.send({ type: 'stop' }, { last: true })
    const received = await receiver.receive('stopped', READY_TIMEOUT_MS)
    if (received.config !== rounds || received.publish !== rounds) {
      throw new Error(
        `the receiver saw ${received.config} config and ${received.publish} publish pings of ${rounds} each`,
      )
    }
    const results: ContenderResult[] = contenders.map((contender) => ({
      id: contender.id,
      name: contender.name,
      label: contender.label,
      summary: summarize(latencies.get(contender.id) ?? []),
    }))
    const [configResult, publishResult] = results
    if (configResult === undefined || publishResult === undefined)
      throw new Error('a contender has no samples')
    const stats = config.stats()
    return {
      kind: 'latency',
      name: 'config-propagation',
      title: 'Config change → change event across processes',
      method:
        'Half the round trip of a ping echoed back by a receiver in another process the same way (config.set answered by ' +
        'config.set, publish by publish), timed with performance.now() in the pinger; one ping in flight; contenders ' +
        'alternate in random order each round.',
      contenders: results,
      comparisons: [
        {
          of: 'config',
          to: 'publish',
          p50: configResult.summary.p50 / publishResult.summary.p50,
          p99: configResult.summary.p99 / publishResult.summary.p99,
        },
      ],
      checks: {
        roundsPerContender: rounds,
        receiverConfigPings: received.config,
        receiverPublishPings: received.publish,
        // Every echo is a new version read from the history: one change applied per round, no resync.
        pingerVersion: stats.version,
        pingerChanges: stats.changes,
        pingerHistoryReads: stats.syncs,
        pingerResyncs: stats.resyncs,
      },
    }
  } catch (error) {
    await receiver.kill()
    throw error
  } finally {
    await config.close()
    await herald.close()
    if ((await receiver.close()) === 'killed') {
      console.warn(`${SELF} (receiver) did not exit after closing everything; it was killed`)
    }
  }
}

/** Rounds of one ping per contender, in a fresh random order each round, so load drift lands on both alike. */
async function measure(
  contenders: readonly Contender[],
  context: BenchContext,
  receiverFailure: Promise<never>,
): Promise<Map<string, number[]>> {
  const latencies = new Map(contenders.map((contender) => [contender.id, [] as number[]]))
  for (let round = 0; round < context.warmup + context.samples; round++) {
    const order = Math.random() < 0.5 ? contenders : [...contenders].reverse()
    for (const contender of order) {
      const roundTripMs = await Promise.race([ping(contender, round + 1), receiverFailure])
      if (round >= context.warmup) latencies.get(contender.id)?.push(roundTripMs / 2)
    }
  }
  return latencies
}

/** One ping in flight: the next waits for this echo and for this write to resolve. */
async function ping(contender: Contender, seq: number): Promise<number> {
  const echoed = contender.echoes.expect(seq)
  const startedAt = performance.now()
  const [, arrivedAt] = await withTimeout(
    Promise.all([contender.send(seq), echoed]),
    SAMPLE_TIMEOUT_MS,
    `${contender.id}: ping ${seq} got no echo`,
  )
  return arrivedAt - startedAt
}

// ---- The receiver: the other process --------------------------------------------------------

function receive(): void {
  let herald: Herald | undefined
  let config: ConfigStore<typeof schema> | undefined
  let closing: Promise<void> | undefined
  const received = { config: 0, publish: 0 }

  const send = (message: FromReceiver, then: () => void = () => {}): void => {
    if (process.connected) process.send?.(message, then)
    else then()
  }
  const shutdown = (): Promise<void> => {
    closing ??= (async () => {
      await config?.close()
      await herald?.close()
    })()
    return closing
  }
  const fail = (error: unknown): void => {
    process.exitCode = 1
    send({ type: 'failed', message: error instanceof Error ? error.message : String(error) })
    void shutdown().finally(() => {
      if (process.connected) process.disconnect()
    })
  }

  async function start(url: string, channels: Channels): Promise<void> {
    const started = new Herald({ connection: url, applicationName: 'bench-config-receiver' })
    herald = started
    // A background error (a lost listener, a refused value) would make the figures lie.
    started.on('error', fail)
    const store = new ConfigStore({ herald: started, schema, namespace: channels.namespace, pollMs: 0 })
    config = store
    store.on('error', fail)
    await started.start()
    await store.start()
    // Echo from the event, as an app reacts to a change: fire and forget.
    store.on('change:ping', ({ value }) => {
      received.config++
      store.set('echo', value).catch(fail)
    })
    await started.subscribe<number>(channels.ping, (seq) => {
      received.publish++
      started.publish(channels.echo, seq).catch(fail)
    })
    send({ type: 'ready' })
  }

  process.on('message', (message: ToReceiver) => {
    if (message.type === 'start') {
      start(message.url, message.channels).catch(fail)
    } else {
      shutdown().then(() => send({ type: 'stopped', ...received }, () => process.disconnect()), fail)
    }
  })
  // The pinger is gone (crashed or killed): close instead of idling on open connections.
  process.on('disconnect', () => void shutdown())
}

/** Standalone: a throwaway server (or DATABASE_URL), BENCH_* options, the figures on stdout. */
async function standalone(): Promise<void> {
  const [{ readOptions }, { benchServer }] = await Promise.all([
    import('./lib/options.js'),
    import('./lib/postgres.js'),
  ])
  const options = readOptions(process.env)
  await using server = await benchServer()
  const context = { ...options, url: server.url }
  console.log(
    `${configPropagation.name}: ${configPropagation.plan(context)} (PostgreSQL ${server.version}, ${server.source})`,
  )
  const result = await configPropagation.run(context)
  console.log(JSON.stringify(result, null, 2))
}

const entry = process.argv[1]
if (entry !== undefined && path.resolve(entry) === fileURLToPath(import.meta.url)) {
  if (process.send !== undefined) receive()
  else {
    // An explicit exit once everything is closed, as bench/run.ts does.
    standalone().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error('bench failed:', error)
        process.exit(1)
      },
    )
  }
}
