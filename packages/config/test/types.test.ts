import { Herald } from '@herald/core'
import { describe, expectTypeOf, it } from 'vitest'
import { z } from 'zod'
import { ConfigStore, type AnyChangeEvent, type ChangeEvent } from '../src/index.js'

// Type-level checks (tsc runs over this file); the runtime part only builds objects.
const herald = new Herald({ connection: 'postgres://nobody@127.0.0.1:1/none' })
const schema = {
  rateLimit: z.number().int().positive().default(100),
  banner: z.string().optional(),
  mode: z.enum(['a', 'b']),
  retries: z.string().transform((text) => Number(text)),
}

describe('types', () => {
  it('types get, set and events from the schema', () => {
    const config = new ConfigStore({ herald, schema })
    expectTypeOf(() => config.get('rateLimit')).returns.toEqualTypeOf<number>()
    expectTypeOf(() => config.get('banner')).returns.toEqualTypeOf<string | undefined>()
    expectTypeOf(() => config.get('mode')).returns.toEqualTypeOf<'a' | 'b'>()
    // get returns the output (transformed), set takes the input.
    expectTypeOf(() => config.get('retries')).returns.toEqualTypeOf<number>()
    expectTypeOf<Parameters<typeof config.set<'retries'>>[1]>().toEqualTypeOf<string>()
    // undefined cannot be stored: reset() is for that.
    expectTypeOf<Parameters<typeof config.set<'banner'>>[1]>().toEqualTypeOf<string>()
    expectTypeOf<Parameters<typeof config.set<'rateLimit'>>[1]>().toEqualTypeOf<number>()
    expectTypeOf(() => config.all()).returns.toEqualTypeOf<{
      readonly rateLimit: number
      readonly banner: string | undefined
      readonly mode: 'a' | 'b'
      readonly retries: number
    }>()

    config.on('change:rateLimit', (event) => {
      expectTypeOf(event).toEqualTypeOf<ChangeEvent<typeof schema, 'rateLimit'>>()
      expectTypeOf(event.value).toEqualTypeOf<number>()
      expectTypeOf(event.previous).toEqualTypeOf<number>()
    })
    config.on('change', (event) => {
      expectTypeOf(event).toEqualTypeOf<AnyChangeEvent<typeof schema>>()
      if (event.key === 'mode') expectTypeOf(event.value).toEqualTypeOf<'a' | 'b'>()
    })
    config.on('error', (error) => expectTypeOf(error.code).toBeString())

    // @ts-expect-error: not a key of the schema
    config.on('change:nope', () => {})
    // @ts-expect-error: not a key of the schema
    void config.set('nope', 1).catch(() => {})
    // @ts-expect-error: the wrong type
    void config.set('rateLimit', 'fast').catch(() => {})
    // @ts-expect-error: not one of the enum's values
    void config.set('mode', 'c').catch(() => {})
  })
})
