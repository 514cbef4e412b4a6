import type { HeraldError } from '@herald/core'
import type { ConfigKey, ConfigSchema, ConfigValue } from './schema.js'

/**
 * Why a key changed.
 * - `set`: `set()` on some instance (or the documented SQL).
 * - `reset`: `reset()`: back to the schema default.
 * - `rollback`: `rollback()` to an earlier version's value.
 * - `resync`: found by re-reading every value, when the history could not say what happened
 *   (rows deleted by hand, the tables recreated).
 */
export type ChangeReason = 'set' | 'reset' | 'rollback' | 'resync'

/** One key's change, applied on this instance. */
export interface ChangeEvent<TSchema extends ConfigSchema, TKey extends ConfigKey<TSchema>> {
  readonly key: TKey
  /** The new value, as `get(key)` now returns it. */
  readonly value: ConfigValue<TSchema, TKey>
  /** What `get(key)` returned before. */
  readonly previous: ConfigValue<TSchema, TKey>
  /** The change's version: versions of a namespace are gapless and applied in order. */
  readonly version: number
  readonly reason: ChangeReason
  /** When the change was written (the writing transaction's start, `now()`). */
  readonly changedAt: Date
  /** The Postgres role that wrote it (`current_user`). */
  readonly changedBy: string
}

/** A `change` event of any key: narrow it with `event.key === 'rateLimit'`. */
export type AnyChangeEvent<TSchema extends ConfigSchema> = {
  [TKey in ConfigKey<TSchema>]: ChangeEvent<TSchema, TKey>
}[ConfigKey<TSchema>]

export interface ReadyEvent {
  /** The version the snapshot was taken at. */
  readonly version: number
}

export interface ResyncEvent {
  /** The version applied before the re-read. */
  readonly from: number
  /** The version after it. */
  readonly to: number
}

/** Events of a `ConfigStore`: each payload one object, so fields can be added without a break. */
export type ConfigEvents<TSchema extends ConfigSchema> = {
  /** `start()` loaded the snapshot: `get()` works from now on. */
  ready: [event: ReadyEvent]
  /** A key changed (on any instance), in version order. */
  change: [event: AnyChangeEvent<TSchema>]
  /**
   * The history had a hole (rows deleted, tables recreated), so every value was re-read
   * instead; each key that differed got a `change` with reason `resync`.
   */
  resync: [event: ResyncEvent]
  /**
   * A background failure: a stored value its schema refuses (`VALUE_INVALID`; the last good
   * value is kept), a hint that is not a config message (`PAYLOAD_INVALID`), a failed read
   * (`CONNECTION_FAILED`). The store keeps working.
   */
  error: [error: HeraldError]
} & {
  /** One key changed: `config.on('change:rateLimit', ({ value }) => ...)`. */
  [TKey in ConfigKey<TSchema> as `change:${TKey}`]: [event: ChangeEvent<TSchema, TKey>]
}
