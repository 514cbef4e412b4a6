import { isHeraldError } from '@herald/core'
import type { StandardSchemaV1 } from '@standard-schema/spec'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import { decodeHint } from '../src/config-message.js'
import { CONFIG_SCHEMA_VERSION, configMigration, configTableSql } from '../src/index.js'
import { isValidator, toJson, validate, valueInvalid } from '../src/schema.js'

/** A hand-written Standard Schema validator, to show zod is not required. */
function evenNumber(options: { async?: boolean; throws?: boolean } = {}): StandardSchemaV1<number> {
  const check = (value: unknown): StandardSchemaV1.Result<number> => {
    if (options.throws) throw new Error('boom')
    return typeof value === 'number' && value % 2 === 0
      ? { value }
      : { issues: [{ message: 'expected an even number', path: [{ key: 'n' }, 0] }] }
  }
  return {
    '~standard': {
      version: 1,
      vendor: 'test',
      validate: (value) => (options.async ? Promise.resolve(check(value)) : check(value)),
    },
  }
}

describe('validate', () => {
  it('runs sync, async and zod validators alike', async () => {
    expect(await validate(evenNumber(), 2)).toEqual({ ok: true, value: 2 })
    expect(await validate(evenNumber({ async: true }), 4)).toEqual({ ok: true, value: 4 })
    expect(await validate(evenNumber({ async: true }), 3)).toMatchObject({ ok: false })
    expect(await validate(z.number().default(7), undefined)).toEqual({ ok: true, value: 7 })
    expect(
      await validate(
        z.string().transform((s) => s.length),
        'abc',
      ),
    ).toEqual({ ok: true, value: 3 })
  })

  it('counts a throwing validator as refusing', async () => {
    const result = await validate(evenNumber({ throws: true }), 2)
    expect(result).toMatchObject({ ok: false, issues: [{ message: 'the validator threw: boom' }] })
  })

  it('recognizes Standard Schema validators only', () => {
    expect(isValidator(z.string())).toBe(true)
    expect(isValidator(evenNumber())).toBe(true)
    expect(isValidator({ parse: () => 1 })).toBe(false)
    expect(isValidator(null)).toBe(false)
    expect(isValidator({ '~standard': { version: 2, validate: () => ({}) } })).toBe(false)
  })

  it('names the key and the issues, with their paths, in VALUE_INVALID', () => {
    const error = valueInvalid(
      'limit',
      [{ message: 'expected an even number', path: [{ key: 'n' }, 0] }],
      'set refused',
    )
    expect(error.code).toBe('VALUE_INVALID')
    expect(error.message).toBe('set refused for config key "limit": n.0: expected an even number')
    expect(error.details).toMatchObject({ key: 'limit', issues: ['expected an even number'] })
  })
})

describe('toJson', () => {
  it('returns the stored text and the value readers will see', () => {
    expect(toJson('k', { a: [1, 'x'] })).toEqual({ text: '{"a":[1,"x"]}', parsed: { a: [1, 'x'] } })
    const date = new Date('2026-01-01T00:00:00Z')
    expect(toJson('k', date).parsed).toBe('2026-01-01T00:00:00.000Z')
  })

  it.each([
    ['undefined', undefined],
    ['a function', () => 1],
    ['a BigInt', 1n],
    ['a symbol', Symbol('s')],
  ])('refuses %s with VALUE_INVALID', (_name, value) => {
    let error: unknown
    try {
      toJson('k', value)
    } catch (caught) {
      error = caught
    }
    expect(isHeraldError(error, 'VALUE_INVALID')).toBe(true)
  })

  it('refuses a cycle', () => {
    const cycle: Record<string, unknown> = {}
    cycle['self'] = cycle
    expect(() => toJson('k', cycle)).toThrow(/not JSON-serializable/)
  })
})

describe('decodeHint', () => {
  it('accepts {n, v} with a positive integer version (number or digits)', () => {
    expect(decodeHint({ n: 'app', v: 3 })).toEqual({ namespace: 'app', version: 3 })
    expect(decodeHint({ n: 'app', v: '42' })).toEqual({ namespace: 'app', version: 42 })
  })

  it.each([
    ['null', null],
    ['an array', [1]],
    ['a string', 'app'],
    ['no namespace', { v: 1 }],
    ['a numeric namespace', { n: 1, v: 1 }],
    ['version 0', { n: 'a', v: 0 }],
    ['a negative version', { n: 'a', v: -1 }],
    ['a fractional version', { n: 'a', v: 1.5 }],
    ['a huge version', { n: 'a', v: 2 ** 60 }],
    ['a word for a version', { n: 'a', v: 'lots' }],
  ])('refuses %s', (_name, body) => {
    expect(decodeHint(body)).toBeUndefined()
  })
})

describe('configTableSql', () => {
  it('creates the three tables idempotently in the given schema, quoted', () => {
    const ddl = configTableSql('tenant_1')
    for (const table of ['config_heads', 'config_values', 'config_history'])
      expect(ddl).toContain(`create table if not exists "tenant_1".${table}`)
    expect(ddl).toContain('create schema if not exists "tenant_1"')
    expect(ddl).not.toMatch(/create table (?!if not exists)/)
  })
})

describe('configMigration', () => {
  it('is the part herald migrate applies: id, version, DDL', () => {
    expect(configMigration.id).toBe('config')
    expect(configMigration.version).toBe(CONFIG_SCHEMA_VERSION)
    expect(configMigration.sql('herald')).toBe(configTableSql('herald'))
  })
})
