import { PGBOUNCER_MISSING, pgBouncerBinary } from '@herald/testing'
import { describe, it } from 'vitest'

/**
 * `describe` for tests that need a real PgBouncer. Without one they skip with one line saying
 * how to install it, except under CI=true, where the missing pooler fails the run: CI must
 * never pass by skipping them.
 */
export function describeWithPgBouncer(name: string, body: () => void): void {
  if (pgBouncerBinary() !== undefined) {
    describe(name, body)
    return
  }
  if (process.env['CI'] === 'true') {
    describe(name, () => {
      it('has PgBouncer installed (CI=true)', () => {
        throw new Error(PGBOUNCER_MISSING)
      })
    })
    return
  }
  console.warn(`${name}: ${PGBOUNCER_MISSING}`)
  // Skipped on purpose: no PgBouncer on this machine (install: apt-get install pgbouncer); never under CI=true (above).
  describe.skip(name, body)
}
