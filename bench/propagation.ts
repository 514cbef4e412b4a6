/**
 * Publish → handler latency between two processes, Herald against the raw postgres.js
 * LISTEN/NOTIFY it is built on and against pg-listen (on `pg`), the common alternative. Latency is half the round trip of a ping that the receiver
 * (another process) echoes back through the same contender: one clock, no cross-process
 * clock offset, and both legs exercise the contender's publish and its handler.
 */
import { Herald, type HeraldError } from '@herald/core'
import { uniqueName } from '@herald/testing'
import postgres from 'postgres'
import type { Benchmark, BenchContext, BenchmarkResult } from './lib/benchmark.js'
import { Child } from './lib/child.js'
import { Echoes } from './lib/echoes.js'
import { openPgListen, type PgListen } from './lib/pg-listen.js'
import { shuffled } from './lib/shuffled.js'
import { summarize } from './lib/stats.js'
import { withTimeout } from './lib/timeout.js'
import type { EchoChannels, FromReceiver, Ping, ToReceiver } from './propagation-messages.js'

const RECEIVER = 'bench/propagation-receiver.ts'
/** Spawning, tsx compiling, two connections and two LISTENs: seconds at most on a slow box. */
const READY_TIMEOUT_MS = 30_000
/** A round trip takes about a millisecond; one that takes this long was lost, not slow. */
const SAMPLE_TIMEOUT_MS = 5_000
/** The goal stated in the issue: Herald's p50 within 1.2× raw postgres.js. */
const TARGET_P50_RATIO = 1.2

interface Contender {
  readonly id: 'herald' | 'raw' | 'pgListen'
  readonly name: string
  readonly label: string
  readonly echoes: Echoes
  send(ping: Ping): Promise<void>
}

export const propagation: Benchmark = {
  name: 'propagation',
  plan: (context) => `${context.samples} samples per contender after ${context.warmup} warm-up`,
  run,
}

async function run(context: BenchContext): Promise<BenchmarkResult> {
  const channels = {
    herald: echoChannels('bench_herald'),
    raw: echoChannels('bench_raw'),
    pgListen: echoChannels('bench_pgl'),
  }
  const receiver = new Child<ToReceiver, FromReceiver>(RECEIVER)
  const herald = new Herald({ connection: context.url, applicationName: 'bench-publisher' })
  const sql = postgres(context.url, {
    onnotice: () => {},
    connection: { application_name: 'bench-publisher-raw' },
  })
  let pgListen: PgListen | undefined
  let heraldError: HeraldError | undefined
  herald.on('error', (error) => {
    heraldError ??= error
  })
  try {
    receiver.send({ type: 'start', url: context.url, ...channels })
    await herald.start()
    pgListen = await openPgListen(context.url, 'bench-publisher-pg-listen')
    const contenders = [
      await heraldContender(herald, channels.herald),
      await rawContender(sql, channels.raw),
      await pgListenContender(pgListen, channels.pgListen),
    ]
    await receiver.receive('ready', READY_TIMEOUT_MS)
    const rounds = context.warmup + context.samples
    const failure = Promise.race([receiver.failure, pgListen.failure])
    const latencies = await measure(contenders, context, failure)
    if (heraldError !== undefined) throw heraldError
    receiver.send({ type: 'stop' }, { last: true })
    const received = await receiver.receive('stopped', READY_TIMEOUT_MS)
    if (received.herald !== rounds || received.raw !== rounds || received.pgListen !== rounds) {
      throw new Error(
        `the receiver saw ${received.herald} Herald, ${received.raw} raw and ${received.pgListen} ` +
          `pg-listen pings of ${rounds} each`,
      )
    }
    const stats = herald.stats()
    const [heraldSummary, rawSummary, pgListenSummary] = contenders.map((contender) =>
      summarize(latencies.get(contender.id) ?? []),
    )
    if (heraldSummary === undefined || rawSummary === undefined || pgListenSummary === undefined)
      throw new Error('a contender has no samples')
    const summaries = { herald: heraldSummary, raw: rawSummary, pgListen: pgListenSummary }
    const p50 = heraldSummary.p50 / rawSummary.p50
    return {
      kind: 'latency',
      name: 'propagation',
      title: 'Publish → handler latency across processes',
      method:
        'Half the round trip of a ping echoed back by a receiver in another process through the same contender, ' +
        'timed with performance.now() in the publisher; one message in flight; contenders run in a fresh random order each round.',
      contenders: contenders.map((contender) => ({
        id: contender.id,
        name: contender.name,
        label: contender.label,
        summary: summaries[contender.id],
      })),
      comparisons: [
        {
          of: 'herald',
          to: 'raw',
          p50,
          p99: heraldSummary.p99 / rawSummary.p99,
          target: { maxP50Ratio: TARGET_P50_RATIO, met: p50 <= TARGET_P50_RATIO },
        },
        // No target: pg-listen is a peer to place Herald among, not the floor it is built on.
        {
          of: 'herald',
          to: 'pgListen',
          p50: heraldSummary.p50 / pgListenSummary.p50,
          p99: heraldSummary.p99 / pgListenSummary.p99,
        },
      ],
      checks: {
        roundsPerContender: rounds,
        receiverHeraldPings: received.herald,
        receiverRawPings: received.raw,
        receiverPgListenPings: received.pgListen,
        // One NOTIFY per publish: coalescing never had a second message to merge, so both
        // contenders sent the same number of statements.
        heraldPublished: stats.published,
        heraldNotifies: stats.notifies,
        heraldReceived: stats.received,
      },
    }
  } catch (error) {
    await receiver.kill()
    throw error
  } finally {
    await Promise.all([herald.close(), sql.end({ timeout: 1 }), pgListen?.close()])
    if ((await receiver.close()) === 'killed') {
      // Not fatal to the figures, but a Herald that keeps a process alive after close() is a bug.
      console.warn(`${RECEIVER} did not exit after closing everything; it was killed`)
    }
  }
}

function echoChannels(prefix: string): EchoChannels {
  return { ping: uniqueName(`${prefix}_ping`), echo: uniqueName(`${prefix}_echo`) }
}

async function heraldContender(herald: Herald, channels: EchoChannels): Promise<Contender> {
  const echoes = new Echoes()
  await herald.subscribe<Ping>(channels.echo, (ping) => echoes.arrive(ping.seq))
  return {
    id: 'herald',
    name: 'Herald',
    label: 'Herald: herald.publish → herald.subscribe handler',
    echoes,
    send: (ping) => herald.publish(channels.ping, ping),
  }
}

async function rawContender(sql: postgres.Sql, channels: EchoChannels): Promise<Contender> {
  const echoes = new Echoes()
  // Parsed, as Herald parses: the handler of either contender gets an object.
  await sql.listen(channels.echo, (text) => echoes.arrive((JSON.parse(text) as Ping).seq))
  return {
    id: 'raw',
    name: 'postgres.js',
    label: 'postgres.js: sql.notify → sql.listen handler',
    echoes,
    send: async (ping) => {
      await sql.notify(channels.ping, JSON.stringify(ping))
    },
  }
}

async function pgListenContender(pgListen: PgListen, channels: EchoChannels): Promise<Contender> {
  const { subscriber } = pgListen
  const echoes = new Echoes()
  // pg-listen has parsed the payload (JSON.parse, its default) before the handler runs.
  subscriber.notifications.on(channels.echo, (ping: Ping) => echoes.arrive(ping.seq))
  await subscriber.listenTo(channels.echo)
  return {
    id: 'pgListen',
    name: 'pg-listen',
    label: 'pg-listen: subscriber.notify → notifications.on handler',
    echoes,
    send: async (ping) => {
      // The subscriber's own connection, the one its LISTENs are on: pg-listen has no other.
      await subscriber.notify(channels.ping, ping)
    },
  }
}

/**
 * Rounds of one ping per contender, in a fresh random order each round, so drift in the
 * machine's load (a compaction, another process, thermal throttling) lands on all alike.
 */
async function measure(
  contenders: readonly Contender[],
  context: BenchContext,
  failure: Promise<never>,
): Promise<Map<string, number[]>> {
  const latencies = new Map(contenders.map((contender) => [contender.id, [] as number[]]))
  for (let round = 0; round < context.warmup + context.samples; round++) {
    for (const contender of shuffled(contenders)) {
      const roundTripMs = await Promise.race([ping(contender, round), failure])
      if (round >= context.warmup) latencies.get(contender.id)?.push(roundTripMs / 2)
    }
  }
  return latencies
}

/** One message in flight: the next ping waits for this echo and for this publish to resolve. */
async function ping(contender: Contender, seq: number): Promise<number> {
  const echoed = contender.echoes.expect(seq)
  const startedAt = performance.now()
  const [, arrivedAt] = await withTimeout(
    Promise.all([
      contender.send({ seq, key: `user:${1000 + (seq % 1000)}:profile`, op: 'invalidate' }),
      echoed,
    ]),
    SAMPLE_TIMEOUT_MS,
    `${contender.id}: ping ${seq} got no echo`,
  )
  return arrivedAt - startedAt
}
