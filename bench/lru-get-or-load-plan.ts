/** Sizes shared by `lru-get-or-load.ts` and its child, so the report describes what the child ran. */

/** Entries in every cache, and its `max` (bentocache: `maxItems`). */
export const KEYS = 10_000
/** Awaited lookups per round of Herald and of lru-cache: a few hundred ms each. */
export const LOOKUPS = 1_000_000
export const QUICK_LOOKUPS = 200_000
/**
 * Bentocache's `getOrSet` hit is some 30–40× slower, so it runs a twentieth as many lookups
 * (the figure is a rate, so the count does not bias it): under half a second per round.
 */
export const BENTO_SHARE = 20
