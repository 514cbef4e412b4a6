import { HeraldError } from './errors.js'

/**
 * The wire format of every Herald message (documented in the core README so SQL can produce it):
 *
 * ```json
 * {"v":1,"o":"<origin id>","k":"<kind>","b":<one JSON body>}
 * {"v":1,"o":"<origin id>","k":"<kind>","bs":[<body>,<body>,...]}   // coalesced publishes
 * ```
 *
 * A message too large for one NOTIFY travels as chunk frames (see `chunking.ts`) that
 * reassemble into this same text.
 */
export const ENVELOPE_VERSION = 1

/** The kind a plain `publish()` carries. */
export const DEFAULT_KIND = 'message'

const KIND_PATTERN = /^[A-Za-z0-9_.:-]{1,32}$/
const MAX_ORIGIN_LENGTH = 64

export interface Envelope {
  /** Id of the publishing `Herald` (or `sql`/`cli` for other producers). */
  readonly origin: string
  /** What the bodies are, for consumers that multiplex several message types on one channel. */
  readonly kind: string
  /** One entry per published message, in publish order. */
  readonly bodies: readonly unknown[]
}

export function assertKind(kind: unknown): string {
  if (isKind(kind)) return kind
  throw new HeraldError(
    'INVALID_OPTION',
    `kind must be 1 to 32 characters of A-Z a-z 0-9 _ . : -, got ${JSON.stringify(kind)}`,
  )
}

/**
 * A handful of kinds are published and received over and over: the valid ones are remembered,
 * within bounds, so that most checks are a set lookup instead of a regular expression.
 */
function isKind(kind: unknown): kind is string {
  if (typeof kind !== 'string') return false
  if (knownKinds.has(kind)) return true
  if (!KIND_PATTERN.test(kind)) return false
  if (knownKinds.size >= MAX_KNOWN_KINDS) knownKinds.clear()
  knownKinds.add(kind)
  return true
}

const MAX_KNOWN_KINDS = 256
const knownKinds = new Set<string>()

/** The envelope text around already-serialized bodies: serializing once keeps the publish path cheap. */
export function encodeEnvelope(origin: string, kind: string, bodyTexts: readonly string[]): string {
  const head = `{"v":${ENVELOPE_VERSION},"o":${JSON.stringify(origin)},"k":${JSON.stringify(kind)},`
  return bodyTexts.length === 1 ? `${head}"b":${bodyTexts[0]}}` : `${head}"bs":[${bodyTexts.join(',')}]}`
}

/** Bytes an envelope adds around its bodies, counting the commas of a batch separately. */
export function envelopeOverheadBytes(origin: string, kind: string): number {
  return Buffer.byteLength(encodeEnvelope(origin, kind, ['', '']), 'utf8')
}

/**
 * Serializes a publish payload, refusing what JSON cannot carry faithfully.
 * @throws HeraldError `PAYLOAD_INVALID`
 */
export function serializeBody(payload: unknown): string {
  let text: string | undefined
  try {
    text = JSON.stringify(payload)
  } catch (error) {
    throw new HeraldError('PAYLOAD_INVALID', `payload is not JSON-serializable: ${String(error)}`, {
      cause: error,
    })
  }
  if (text === undefined) {
    throw new HeraldError('PAYLOAD_INVALID', `payload of type ${typeof payload} is not JSON-serializable`)
  }
  return text
}

/**
 * Parses a reassembled notification into an envelope.
 * @throws HeraldError `PAYLOAD_INVALID` for anything that is not a Herald envelope.
 */
export function decodeEnvelope(text: string): Envelope {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw invalid('is not JSON', text, error)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid('is not a JSON object', text)
  }
  const record = value as Record<string, unknown>
  if (record['v'] !== ENVELOPE_VERSION) throw invalid(`has no "v":${ENVELOPE_VERSION}`, text)
  const origin = record['o']
  if (typeof origin !== 'string' || origin.length === 0 || origin.length > MAX_ORIGIN_LENGTH) {
    throw invalid('has no origin "o"', text)
  }
  const kind = record['k']
  if (!isKind(kind)) throw invalid('has no kind "k"', text)
  if ('b' in record) return { origin, kind, bodies: [record['b']] }
  const bodies = record['bs']
  if (Array.isArray(bodies) && bodies.length > 0) return { origin, kind, bodies }
  throw invalid('has neither "b" nor a non-empty "bs"', text)
}

const EXCERPT_LENGTH = 200

function invalid(problem: string, text: string, cause?: unknown): HeraldError {
  return new HeraldError('PAYLOAD_INVALID', `notification payload ${problem}`, {
    cause,
    details: { excerpt: text.length > EXCERPT_LENGTH ? `${text.slice(0, EXCERPT_LENGTH)}…` : text },
  })
}
