/** Sizes shared by `lru-get.ts` and its child, so the report describes what the child ran. */

/** Entries in either cache, and its `max`. */
export const KEYS = 10_000
/** Lookups per contender per round: a few hundred ms each. */
export const LOOKUPS = 5_000_000
export const QUICK_LOOKUPS = 1_000_000
