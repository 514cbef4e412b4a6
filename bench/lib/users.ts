/** The cached value of every lru benchmark: a small row, as an app caches one. */
export interface User {
  readonly id: number
  readonly name: string
  readonly email: string
}

export function makeUser(id: number): User {
  return { id, name: `User ${id}`, email: `user${id}@example.com` }
}

/** `user:123`, or with a prefix (`r4:user:123`) for keys that must not repeat between rounds. */
export function userKey(id: number, prefix = ''): string {
  return `${prefix}user:${id}`
}

/**
 * `length` pseudo-random indices in [0, range), from a seeded xorshift32: every contender
 * and every run reads the same sequence, and generating it costs nothing in the timed loop.
 */
export function randomIndices(length: number, range: number, seed = 0x9e3779b9): Uint32Array {
  const indices = new Uint32Array(length)
  let state = seed >>> 0 || 1
  for (let i = 0; i < length; i++) {
    state ^= state << 13
    state >>>= 0
    state ^= state >>> 17
    state ^= state << 5
    state >>>= 0
    indices[i] = state % range
  }
  return indices
}
