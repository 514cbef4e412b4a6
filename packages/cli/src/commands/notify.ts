import { assertChannelName } from '@herald/core'
import { positionals, stringOption } from '../args.js'
import { CONNECTION_HELP, type Command } from '../command.js'
import { connectionUrl, openClient } from '../connection.js'
import { notifyPayloads } from '../envelope.js'
import { EXIT, UsageError } from '../io.js'

const KIND = /^[A-Za-z0-9_.:-]{1,32}$/

export const notifyCommand: Command = {
  name: 'notify',
  summary: 'Publish a JSON message on a channel, as a Herald envelope',
  help: `Usage: herald notify <channel> <json> [--kind <kind>]

Publishes <json> (any JSON value) on <channel> in a Herald envelope with origin "cli", so
every Herald subscriber receives it as a message. Above 7999 bytes it is sent as chunk frames,
all in one statement. Examples:

  herald notify orders '{"id":42}'
  herald notify cache_invalidation '{"c":"users","k":["user:42"]}' --kind invalidate

Options:
  --kind <kind>   The envelope kind, meta.kind (default: message; caches listen to "invalidate")

${CONNECTION_HELP}

Exit: 0 sent, 1 failed, 2 usage error (bad channel, kind or JSON).`,
  options: { kind: { type: 'string' } },
  async run(parsed, io) {
    const [channel = '', json = ''] = positionals(parsed, ['channel', 'json'])
    assertChannelName(channel)
    const kind = stringOption(parsed, 'kind') ?? 'message'
    if (!KIND.test(kind)) throw new UsageError(`--kind must be 1 to 32 characters of A-Z a-z 0-9 _ . : -`)
    let body: unknown
    try {
      body = JSON.parse(json)
    } catch (error) {
      throw new UsageError(`<json> is not JSON: ${error instanceof Error ? error.message : String(error)}`)
    }
    const payloads = notifyPayloads(body, kind)
    const sql = openClient(connectionUrl(parsed, io))
    try {
      // One statement: chunk frames commit together, in order.
      await sql`select pg_notify(${channel}, payload) from json_array_elements_text(${JSON.stringify(payloads)}::text::json) as payload`
      io.stdout(
        `notified ${channel}: ${Buffer.byteLength(json)} bytes of JSON in ${payloads.length} NOTIFY${payloads.length === 1 ? '' : 's'}\n`,
      )
      return EXIT.ok
    } finally {
      await sql.end({ timeout: 1 })
    }
  },
}
