/** Sizes shared by `lru-memory.ts` and its child, so the report describes what the child ran. */

/** Entries per cache, and every cache's `max`. */
export const ENTRIES = 100_000

/** What is measured; `data` is the keys and values alone, held in two arrays, for reference. */
export const CONTENDERS = ['herald', 'bare', 'heraldTags', 'data'] as const
export type MemoryContender = (typeof CONTENDERS)[number]
