import { createHash } from 'node:crypto'
import { HeraldError } from '@herald/core'

// A namespace in front of every name, so Herald's keys cannot meet the small integers or
// hashtext() values applications use for their own advisory locks, except by a 2^-64 accident.
const KEY_SPACE = 'herald:lock:'

/**
 * The 64-bit advisory-lock key of a lock name: the first 8 bytes of SHA-256, as a signed
 * bigint. Not `hashtext()`: 32 bits, and its output changed between PostgreSQL versions.
 */
export function lockKey(name: string): bigint {
  return createHash('sha256').update(KEY_SPACE).update(name, 'utf8').digest().readBigInt64BE(0)
}

export const MAX_LOCK_NAME_LENGTH = 1_000

/** @throws HeraldError `INVALID_KEY` */
export function assertLockName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_LOCK_NAME_LENGTH) {
    throw new HeraldError(
      'INVALID_KEY',
      `a lock name must be a string of 1 to ${MAX_LOCK_NAME_LENGTH} characters, got ${describe(name)}`,
    )
  }
  return name
}

function describe(value: unknown): string {
  if (typeof value === 'string') return value.length === 0 ? 'an empty string' : `${value.length} characters`
  return value === null ? 'null' : typeof value
}
