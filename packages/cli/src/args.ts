import { parseArgs, type ParseArgsConfig } from 'node:util'
import { UsageError } from './io.js'

export type OptionSpecs = NonNullable<ParseArgsConfig['options']>

/** Options every command takes. */
export const COMMON_OPTIONS = {
  url: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies OptionSpecs

export interface Parsed {
  readonly values: Record<string, string | boolean | (string | boolean)[] | undefined>
  readonly positionals: string[]
}

/** `node:util` parseArgs, strict, with its errors turned into usage errors (exit 2). */
export function parse(args: readonly string[], options: OptionSpecs): Parsed {
  try {
    const { values, positionals } = parseArgs({
      args: [...args],
      options: { ...COMMON_OPTIONS, ...options },
      allowPositionals: true,
      strict: true,
    })
    return { values, positionals }
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error))
  }
}

export function stringOption(parsed: Parsed, name: string): string | undefined {
  const value = parsed.values[name]
  return typeof value === 'string' ? value : undefined
}

export function requiredString(parsed: Parsed, name: string): string {
  const value = stringOption(parsed, name)
  if (value === undefined || value === '') throw new UsageError(`--${name} is required`)
  return value
}

export function stringList(parsed: Parsed, name: string): string[] {
  const value = parsed.values[name]
  if (value === undefined) return []
  return (Array.isArray(value) ? value : [value]).filter((item): item is string => typeof item === 'string')
}

export function flag(parsed: Parsed, name: string): boolean {
  return parsed.values[name] === true
}

/** A whole number option within bounds, or its default. */
export function integerOption(parsed: Parsed, name: string, fallback: number, min = 1): number {
  const text = stringOption(parsed, name)
  if (text === undefined) return fallback
  const value = Number(text)
  if (!Number.isSafeInteger(value) || value < min) {
    throw new UsageError(`--${name} must be a whole number >= ${min}, got ${JSON.stringify(text)}`)
  }
  return value
}

/** Exactly `count` positionals, named for the message. */
export function positionals(parsed: Parsed, names: readonly string[]): string[] {
  if (parsed.positionals.length < names.length) {
    throw new UsageError(`missing <${names[parsed.positionals.length] ?? ''}>`)
  }
  if (parsed.positionals.length > names.length) {
    throw new UsageError(`unexpected argument ${JSON.stringify(parsed.positionals[names.length])}`)
  }
  return parsed.positionals
}
