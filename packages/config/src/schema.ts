import { HeraldError } from '@herald/core'
import type { StandardSchemaV1 } from '@standard-schema/spec'

/** One validator per key: any Standard Schema (zod, valibot, arktype, ...). */
export type ConfigSchema = Readonly<Record<string, StandardSchemaV1>>

/** The keys of a schema. */
export type ConfigKey<TSchema extends ConfigSchema> = keyof TSchema & string

/** What `get(key)` returns: the validator's output (defaults applied, transforms run). */
export type ConfigValue<
  TSchema extends ConfigSchema,
  TKey extends ConfigKey<TSchema>,
> = StandardSchemaV1.InferOutput<TSchema[TKey]>

/**
 * What `set(key, value)` takes: the validator's input, less `undefined`, which JSON cannot
 * store (`reset(key)` returns a key to its default).
 */
export type ConfigInput<TSchema extends ConfigSchema, TKey extends ConfigKey<TSchema>> = Exclude<
  StandardSchemaV1.InferInput<TSchema[TKey]>,
  undefined
>

/** Every key's value: what `all()` returns. */
export type ConfigValues<TSchema extends ConfigSchema> = {
  readonly [TKey in ConfigKey<TSchema>]: ConfigValue<TSchema, TKey>
}

export type Validation =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly issues: readonly StandardSchemaV1.Issue[] }

/** Runs a key's validator (sync or async); a validator that throws counts as refusing. */
export async function validate(validator: StandardSchemaV1, value: unknown): Promise<Validation> {
  let result: StandardSchemaV1.Result<unknown>
  try {
    result = await validator['~standard'].validate(value)
  } catch (error) {
    return { ok: false, issues: [{ message: `the validator threw: ${describeError(error)}` }] }
  }
  if (result.issues !== undefined) return { ok: false, issues: result.issues }
  return { ok: true, value: result.value }
}

/** A `VALUE_INVALID` error naming the key and the first few issues. */
export function valueInvalid(
  key: string,
  issues: readonly StandardSchemaV1.Issue[],
  context: string,
  details: Readonly<Record<string, unknown>> = {},
): HeraldError {
  const summary = issues
    .slice(0, 3)
    .map((issue) => {
      const path = issue.path?.map((segment) => String(typeof segment === 'object' ? segment.key : segment))
      return path === undefined || path.length === 0 ? issue.message : `${path.join('.')}: ${issue.message}`
    })
    .join('; ')
  return new HeraldError('VALUE_INVALID', `${context} for config key ${JSON.stringify(key)}: ${summary}`, {
    details: { key, issues: issues.map((issue) => issue.message), ...details },
  })
}

/**
 * The JSON text a value is stored as, and the value every reader will validate (the text
 * parsed back): a Date, a Map or a class instance does not survive JSON, and a value that
 * would not pass its schema once read back must be refused now, not on every other instance.
 * @throws HeraldError `VALUE_INVALID`
 */
export function toJson(key: string, value: unknown): { readonly text: string; readonly parsed: unknown } {
  let text: string | undefined
  try {
    text = JSON.stringify(value)
  } catch (error) {
    throw new HeraldError(
      'VALUE_INVALID',
      `config key ${JSON.stringify(key)}: the value is not JSON-serializable: ${describeError(error)}`,
      { cause: error, details: { key } },
    )
  }
  if (text === undefined) {
    throw new HeraldError(
      'VALUE_INVALID',
      `config key ${JSON.stringify(key)}: a value of type ${typeof value} cannot be stored (use reset() to return to the default)`,
      { details: { key } },
    )
  }
  return { text, parsed: JSON.parse(text) }
}

export function isValidator(value: unknown): value is StandardSchemaV1 {
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) return false
  const props = (value as { '~standard'?: unknown })['~standard']
  return (
    typeof props === 'object' &&
    props !== null &&
    (props as { version?: unknown }).version === 1 &&
    typeof (props as { validate?: unknown }).validate === 'function'
  )
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
