import type { HeraldError } from '@herald/core'

export interface LostEvent {
  readonly name: string
  readonly token: bigint
  readonly error: HeraldError
}

export interface LocksEvents {
  /** A held lock was lost (its session closed or stopped answering); its `signal` is aborted. */
  lost: [event: LostEvent]
  /** A background failure (a sweep query, an invalid release message); waiting goes on. */
  error: [error: HeraldError]
}
