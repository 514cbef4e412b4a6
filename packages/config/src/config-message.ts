/**
 * The hint every write sends, inside a Herald envelope of kind `config`:
 * `{"n":"<namespace>","v":<version>}`. It carries no value: a receiver reads the history
 * after its own version, so a forged hint costs at most one query and changes nothing.
 */
export const CONFIG_KIND = 'config'

export interface ConfigHint {
  readonly namespace: string
  readonly version: number
}

/** The hint, or `undefined` for a body that is not one. */
export function decodeHint(body: unknown): ConfigHint | undefined {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return undefined
  const { n, v } = body as { n?: unknown; v?: unknown }
  const version = typeof v === 'string' && /^\d{1,16}$/.test(v) ? Number(v) : v
  if (typeof n !== 'string' || typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1)
    return undefined
  return { namespace: n, version }
}
