import { assertChannelName, Herald, type HeraldError, type MessageMeta } from '@herald/core'
import { flag, integerOption, positionals, type Parsed } from '../args.js'
import { CONNECTION_HELP, type Command } from '../command.js'
import { connectionUrl } from '../connection.js'
import { EXIT, type CliIo } from '../io.js'

/** A body whose compact JSON is longer than this is printed compact rather than indented. */
const PRETTY_LIMIT = 2_000

export const listenCommand: Command = {
  name: 'listen',
  summary: 'Print every message on a channel as it arrives',
  help: `Usage: herald listen <channel> [--json] [--count <n>]

Subscribes to <channel> through a Herald (one LISTEN connection, reconnecting) and prints
each message as it arrives: time, kind, origin, and the body, with chunked messages
reassembled and coalesced batches split into their messages. A payload that is not a Herald
envelope is shown as such. Runs until Ctrl-C (or --count messages); "listening on <channel>"
on stderr means the LISTEN is live. Connection losses are reported on stderr: messages sent
while disconnected are lost, as for every listener.

Options:
  --json          One JSON object per line: {"channel","origin","kind","receivedAt","body"}
  --count <n>     Exit after n messages

${CONNECTION_HELP}

Exit: 0 stopped by Ctrl-C or after --count, 1 failed, 2 usage error.`,
  options: { json: { type: 'boolean' }, count: { type: 'string' } },
  async run(parsed, io) {
    const [channel = ''] = positionals(parsed, ['channel'])
    assertChannelName(channel)
    const count = integerOption(parsed, 'count', Number.POSITIVE_INFINITY)
    const url = connectionUrl(parsed, io)
    const herald = new Herald({ connection: url ?? {}, applicationName: 'herald-cli' })
    let received = 0
    let failure: Error | undefined
    const done = new Promise<void>((resolve) => {
      if (io.signal.aborted) resolve()
      io.signal.addEventListener('abort', () => resolve(), { once: true })
      herald.on('error', (error) => report(error, channel, parsed, io))
      herald.on('disconnected', ({ error }) => io.stderr(`disconnected: ${error.message}; reconnecting\n`))
      herald.on('reconnected', ({ downtimeMs }) =>
        io.stderr(`reconnected after ${downtimeMs} ms; messages sent meanwhile were lost\n`),
      )
      const handler = (body: unknown, meta: MessageMeta): void => {
        if (received >= count) return
        received++
        io.stdout(format(body, meta, parsed))
        if (received >= count) resolve()
      }
      herald
        .start({ signal: io.signal })
        .then(() => herald.subscribe(channel, handler, { signal: io.signal }))
        .then(
          () => io.stderr(`listening on ${channel}\n`),
          (error: unknown) => {
            failure = error instanceof Error ? error : new Error(String(error))
            resolve()
          },
        )
    })
    await done
    await herald.close()
    if (failure !== undefined && !io.signal.aborted) throw failure
    return EXIT.ok
  },
}

function format(body: unknown, meta: MessageMeta, parsed: Parsed): string {
  if (flag(parsed, 'json')) {
    return `${JSON.stringify({
      channel: meta.channel,
      origin: meta.origin,
      kind: meta.kind,
      receivedAt: new Date(meta.receivedAt).toISOString(),
      body,
    })}\n`
  }
  const compact = JSON.stringify(body)
  const text = compact.length > PRETTY_LIMIT ? compact : JSON.stringify(body, null, 2)
  const summary = meta.kind === 'invalidate' ? summarize(body) : ''
  return `${time(meta.receivedAt)}  ${meta.channel}  ${meta.kind}  from ${meta.origin}${summary}\n${text}\n`
}

/** `cache users: 3 keys, 1 tag` for a cache message. */
function summarize(body: unknown): string {
  if (typeof body !== 'object' || body === null) return ''
  const record = body as Record<string, unknown>
  if (typeof record['c'] !== 'string') return ''
  const parts: string[] = []
  const count = (field: string, noun: string): void => {
    const list = record[field]
    if (Array.isArray(list)) parts.push(`${list.length} ${noun}${list.length === 1 ? '' : 's'}`)
  }
  count('k', 'key')
  count('t', 'tag')
  if (record['f'] === 1 || record['f'] === true) parts.push('flush')
  return `  (cache ${record['c']}: ${parts.join(', ')})`
}

function time(at: number): string {
  return new Date(at).toISOString().slice(11, 23)
}

/** A notification that is not a Herald envelope is worth seeing; other errors go to stderr. */
function report(error: HeraldError, channel: string, parsed: Parsed, io: CliIo): void {
  if (error.code === 'PAYLOAD_INVALID' && error.details['channel'] === channel) {
    const excerpt = typeof error.details['excerpt'] === 'string' ? error.details['excerpt'] : ''
    if (flag(parsed, 'json')) {
      io.stdout(`${JSON.stringify({ channel, invalid: error.message, excerpt })}\n`)
    } else {
      io.stdout(`${time(Date.now())}  ${channel}  (not a Herald envelope: ${error.message})\n${excerpt}\n`)
    }
    return
  }
  io.stderr(`error: ${error.message}\n`)
}
