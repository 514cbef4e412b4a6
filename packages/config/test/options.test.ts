import { Herald, isHeraldError } from '@herald/core'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { ConfigStore } from '../src/index.js'
import { resolveConfigOptions } from '../src/options.js'

// Never started: constructing a Herald does no I/O.
const herald = new Herald({ connection: 'postgres://nobody@127.0.0.1:1/none' })
const schema = { rateLimit: z.number().default(100) }

function codeOf(run: () => unknown): string | undefined {
  try {
    run()
  } catch (error) {
    return isHeraldError(error) ? error.code : `not a HeraldError: ${String(error)}`
  }
  return undefined
}

describe('options', () => {
  it('resolves defaults', () => {
    expect(resolveConfigOptions({ herald, schema })).toMatchObject({
      namespace: 'default',
      channel: 'herald_config',
      tableSchema: 'herald',
      migrate: true,
      pollMs: 30_000,
      sql: undefined,
    })
  })

  it.each([
    ['no options', () => new ConfigStore(undefined as never)],
    ['no herald', () => new ConfigStore({ schema } as never)],
    ['no schema', () => new ConfigStore({ herald } as never)],
    ['an empty schema', () => new ConfigStore({ herald, schema: {} })],
    [
      'a validator that is not a Standard Schema',
      () => new ConfigStore({ herald, schema: { a: { parse: () => 1 } } as never }),
    ],
    ['an empty namespace', () => new ConfigStore({ herald, schema, namespace: '' })],
    [
      'a table schema that needs quoting',
      () => new ConfigStore({ herald, schema, tableSchema: 'my schema' }),
    ],
    ['a negative pollMs', () => new ConfigStore({ herald, schema, pollMs: -1 })],
    ['an infinite pollMs', () => new ConfigStore({ herald, schema, pollMs: Infinity })],
    ['a non-boolean migrate', () => new ConfigStore({ herald, schema, migrate: 'yes' as never })],
  ])('refuses %s with INVALID_OPTION', (_name, build) => {
    expect(codeOf(build)).toBe('INVALID_OPTION')
  })

  it('refuses a bad channel with INVALID_CHANNEL and an empty key with INVALID_KEY', () => {
    expect(codeOf(() => new ConfigStore({ herald, schema, channel: 'bad channel' }))).toBe('INVALID_CHANNEL')
    expect(codeOf(() => new ConfigStore({ herald, schema: { '': z.string() } }))).toBe('INVALID_KEY')
  })
})

describe('before start', () => {
  it('get throws NOT_STARTED, or INVALID_KEY for a key not in the schema', () => {
    const config = new ConfigStore({ herald, schema })
    expect(config.ready).toBe(false)
    expect(config.version).toBe(0)
    expect(codeOf(() => config.get('rateLimit'))).toBe('NOT_STARTED')
    expect(codeOf(() => config.get('other' as 'rateLimit'))).toBe('INVALID_KEY')
    expect(codeOf(() => config.all())).toBe('NOT_STARTED')
  })

  it('refuses invalid values before any I/O', async () => {
    const config = new ConfigStore({ herald, schema })
    await expect(config.set('rateLimit', 'x' as unknown as number)).rejects.toMatchObject({
      code: 'VALUE_INVALID',
    })
    await expect(config.set('other' as 'rateLimit', 1)).rejects.toMatchObject({ code: 'INVALID_KEY' })
    await expect(config.history('rateLimit', { limit: 0 })).rejects.toMatchObject({ code: 'INVALID_OPTION' })
    await expect(config.rollback('rateLimit', 0)).rejects.toMatchObject({ code: 'INVALID_OPTION' })
    // A valid value reaches for the Herald's client, which does not exist before herald.start().
    await expect(config.set('rateLimit', 5)).rejects.toMatchObject({ code: 'NOT_STARTED' })
    await expect(config.start()).rejects.toMatchObject({ code: 'NOT_STARTED' })
    await config.close()
    await expect(config.set('rateLimit', 5)).rejects.toMatchObject({ code: 'CLOSED' })
  })

  it('refuses reset of a key without a default', async () => {
    const config = new ConfigStore({ herald, schema: { dsn: z.string() } })
    await expect(config.reset('dsn')).rejects.toMatchObject({ code: 'VALUE_INVALID' })
  })
})
