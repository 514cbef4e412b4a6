import { z } from 'zod'

/**
 * The flags, one zod validator each: `set` refuses a value its validator refuses, and a stored
 * value that fails it (written with SQL, say) is ignored by every reader, which keeps the last
 * good one. A flag's default is what its validator makes of `undefined`.
 */
export const FLAGS = {
  /** The new checkout flow, on or off. */
  newCheckout: z.boolean().default(false),
  /** Share of users who get the new flow while it is on, in percent. */
  rolloutPercent: z.number().int().min(0).max(100).default(0),
  /** A message shown on every page, if any. */
  banner: z.string().min(1).max(120).optional(),
}

/** Scopes the flags: stores of one namespace share them. `EXAMPLE_NAMESPACE`, so several runs can share a server. */
export const NAMESPACE = process.env['EXAMPLE_NAMESPACE'] ?? 'herald-example-flags'

export function show(value: unknown): string {
  return value === undefined ? '(unset)' : JSON.stringify(value)
}

/** What the app does with the flags, in one line. */
export function checkout(flags: { newCheckout: boolean; rolloutPercent: number }): string {
  if (!flags.newCheckout || flags.rolloutPercent === 0) return 'everyone gets the classic checkout'
  return `${flags.rolloutPercent}% of users get the new checkout`
}
