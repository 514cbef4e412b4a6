import {
  HeraldError,
  safeEmit,
  toTransactionRunner,
  type MessageMeta,
  type Subscription,
  type TransactionRunner,
} from '@herald/core'
import type { StandardSchemaV1 } from '@standard-schema/spec'
import { EventEmitter } from 'eventemitter3'
import type { Sql } from 'postgres'
import { CONFIG_KIND, decodeHint } from './config-message.js'
import {
  ConfigTables,
  queryFailed,
  type StoredChange,
  type StoredValue,
  type Written,
} from './config-tables.js'
import type { ChangeReason, ConfigEvents } from './events.js'
import { ensureConfigTables } from './migrations.js'
import {
  assertKeyName,
  resolveConfigOptions,
  resolveLimit,
  type ConfigStoreOptions,
  type HistoryOptions,
  type ResolvedConfigOptions,
  type WriteOptions,
} from './options.js'
import {
  toJson,
  validate,
  valueInvalid,
  type ConfigInput,
  type ConfigKey,
  type ConfigSchema,
  type ConfigValue,
  type ConfigValues,
} from './schema.js'

/** One entry of `history(key)`. */
export interface ConfigHistoryEntry {
  readonly version: number
  /** The stored JSON value, parsed; `undefined` for a reset. Not validated: the schema may have changed since. */
  readonly value: unknown
  /** `reset()`: back to the schema default. */
  readonly reset: boolean
  /** When it was written (the writing transaction's start). */
  readonly changedAt: Date
  /** The Postgres role that wrote it (`current_user`). */
  readonly changedBy: string
  /** The writing connection's `application_name`. */
  readonly applicationName: string
  /** Set by `rollback()`: the version whose value this restored. */
  readonly rolledBackTo: number | undefined
}

export interface ConfigStats {
  /** The latest version applied here. */
  readonly version: number
  /** Changes applied here (each one a `change` event). */
  readonly changes: number
  /** Hints received on the channel for this namespace, own ones included. */
  readonly hints: number
  /** History reads made (after hints, reconnects, polls). */
  readonly syncs: number
  /** Full re-reads, when the history had a hole. */
  readonly resyncs: number
  /** Stored values refused by their schema (each one an `error` event). */
  readonly rejected: number
}

interface Entry {
  value: unknown
  /** The stored jsonb text; `undefined`: the default. */
  text: string | undefined
}

type State = 'idle' | 'starting' | 'ready' | 'closed'

/** History rows read per query while catching up. */
const SYNC_BATCH = 1_000

/**
 * Typed, versioned configuration, the same on every instance. Values live in Postgres; every
 * change gets the namespace's next version (gapless, committed in order), a history row and a
 * NOTIFY hint. On a hint, after every reconnect and on a slow poll, an instance reads the
 * history after the last version it applied and applies it in order, so no change is missed
 * and a forged hint changes nothing.
 */
export class ConfigStore<TSchema extends ConfigSchema>
  extends EventEmitter<ConfigEvents<TSchema>>
  implements AsyncDisposable
{
  readonly namespace: string
  readonly #options: ResolvedConfigOptions
  /** Unties this from its Herald's close(), once closed by itself. */
  readonly #untie: () => void
  readonly #schema: TSchema
  readonly #tables: ConfigTables
  readonly #entries = new Map<string, Entry>()
  #state: State = 'idle'
  #starting: Promise<void> | undefined
  #subscription: Subscription | undefined
  #version = 0
  /** A hint arrived before the snapshot was applied: read the history right after. */
  #hinted = false
  /** Writes of ours without `tx` still running: they apply their own versions when they return. */
  #ownWrites = 0
  /** The highest version an own hint named while own writes ran: read it after them if still unapplied. */
  #deferredHint = 0
  #syncing: Promise<void> | undefined
  #nextSync: Promise<void> | undefined
  #pollTimer: ReturnType<typeof setTimeout> | undefined
  #changes = 0
  #hints = 0
  #syncs = 0
  #resyncs = 0
  #rejected = 0

  constructor(options: ConfigStoreOptions<TSchema>) {
    super()
    this.#options = resolveConfigOptions(options)
    this.#untie = this.#options.herald.closeWith(this)
    this.#schema = options.schema
    this.namespace = this.#options.namespace
    this.#tables = new ConfigTables(() => this.#sql(), this.#options.tableSchema, this.namespace)
  }

  /**
   * Creates the tables if needed, subscribes, then loads every value (subscribing first, so a
   * change committed meanwhile is either in the snapshot or hinted after it). Emits `ready`.
   * Idempotent. Needs a started Herald.
   * @throws HeraldError `VALUE_INVALID` (a key with neither a valid stored value nor a default),
   * `NOT_STARTED`, `CLOSED`, `CONNECTION_FAILED`
   */
  start(): Promise<void> {
    if (this.#state === 'closed') return Promise.reject(closedError())
    this.#starting ??= this.#start().catch(async (error: unknown) => {
      this.#options.herald.off('reconnected', this.#onReconnected)
      const subscription = this.#subscription
      this.#subscription = undefined
      await subscription?.unsubscribe()
      if (this.#state !== 'closed') {
        this.#state = 'idle'
        this.#starting = undefined
      }
      throw error
    })
    return this.#starting
  }

  async #start(): Promise<void> {
    const { herald, channel } = this.#options
    if (herald.closed) throw new HeraldError('CLOSED', 'the Herald is closed')
    this.#state = 'starting'
    await this.#migrate()
    this.#assertStarting()
    this.#subscription = await herald.subscribe(channel, (body, meta) => this.#onMessage(body, meta))
    herald.on('reconnected', this.#onReconnected)
    this.#assertStarting()
    let snapshot
    try {
      snapshot = await this.#tables.snapshot()
    } catch (error) {
      throw queryFailed(error, 'reading the config snapshot failed')
    }
    this.#assertStarting()
    await this.#loadSnapshot(snapshot.values)
    this.#assertStarting()
    this.#version = snapshot.head
    this.#state = 'ready'
    this.#schedulePoll()
    this.#emit('ready', { version: this.#version })
    if (this.#hinted) void this.#sync()
  }

  /** `start()` has loaded the snapshot and the store is not closed. */
  get ready(): boolean {
    return this.#state === 'ready'
  }

  /** The latest version applied on this instance (0: nothing was ever written). */
  get version(): number {
    return this.#version
  }

  /**
   * The key's value: the last valid stored one, or the schema's default. Synchronous; after
   * `close()` it keeps returning the last values, which are no longer updated.
   * @throws HeraldError `NOT_STARTED` before `start()` resolved, `INVALID_KEY` for a key not in the schema
   */
  get<TKey extends ConfigKey<TSchema>>(key: TKey): ConfigValue<TSchema, TKey> {
    const entry = this.#entries.get(key)
    if (entry === undefined) {
      this.#validator(key)
      throw new HeraldError('NOT_STARTED', 'call `await config.start()` first')
    }
    return entry.value
  }

  /** Every key's value, as `get` returns them. @throws HeraldError `NOT_STARTED` */
  all(): ConfigValues<TSchema> {
    if (this.#entries.size === 0) throw new HeraldError('NOT_STARTED', 'call `await config.start()` first')
    return Object.fromEntries(
      [...this.#entries].map(([key, entry]) => [key, entry.value]),
    ) as ConfigValues<TSchema>
  }

  /**
   * Validates `value` (as it will be read back: through JSON), then writes it with the next
   * version, a history row and a hint, in one statement, or in `tx`. Without `tx`, resolves
   * once this instance applied it (`get` returns it); with `tx`, every instance (this one
   * included) applies it when the transaction commits.
   * @returns the change's version
   * @throws HeraldError `VALUE_INVALID` (nothing written), `INVALID_KEY`, `CLOSED`, `NOT_STARTED`
   * (the Herald), `CONNECTION_FAILED` (a role without write permission gets SQLSTATE 42501)
   */
  async set<TKey extends ConfigKey<TSchema>>(
    key: TKey,
    value: ConfigInput<TSchema, TKey>,
    options: WriteOptions = {},
  ): Promise<number> {
    const validator = this.#validator(key)
    this.#assertOpen()
    const tx = transactionOf(options, 'config.set')
    const { text, parsed } = toJson(key, value)
    const result = await validate(validator, parsed)
    if (!result.ok) throw valueInvalid(key, result.issues, 'set refused')
    return this.#write(key, text, result.value, 'set', tx)
  }

  /**
   * Returns the key to its schema default everywhere (a new version whose history value is
   * null).
   * @throws HeraldError `VALUE_INVALID` (the key has no default), `INVALID_KEY`, `CLOSED`, `CONNECTION_FAILED`
   */
  async reset<TKey extends ConfigKey<TSchema>>(key: TKey, options: WriteOptions = {}): Promise<number> {
    const validator = this.#validator(key)
    this.#assertOpen()
    const tx = transactionOf(options, 'config.reset')
    const result = await validate(validator, undefined)
    if (!result.ok) throw valueInvalid(key, result.issues, 'reset refused: the key has no default')
    return this.#write(key, undefined, result.value, 'reset', tx)
  }

  /**
   * Sets the value `key` had at `version`, as a new version (its history row records
   * `rolledBackTo`). The old value is validated against today's schema first.
   * @returns the new version
   * @throws HeraldError `INVALID_OPTION` (no such version of this key), `VALUE_INVALID`, `INVALID_KEY`, `CLOSED`, `CONNECTION_FAILED`
   */
  async rollback<TKey extends ConfigKey<TSchema>>(
    key: TKey,
    version: number,
    options: WriteOptions = {},
  ): Promise<number> {
    const validator = this.#validator(key)
    if (!Number.isSafeInteger(version) || version < 1) {
      throw new HeraldError('INVALID_OPTION', `version must be a positive integer, got ${String(version)}`)
    }
    this.#assertOpen()
    const tx = transactionOf(options, 'config.rollback')
    await this.#migrate()
    let found
    try {
      found = await this.#tables.valueAt(key, version, tx)
    } catch (error) {
      throw queryFailed(error, `reading version ${version} of config key ${JSON.stringify(key)} failed`)
    }
    if (found === undefined) {
      throw new HeraldError(
        'INVALID_OPTION',
        `config key ${JSON.stringify(key)} has no version ${version} in namespace ${JSON.stringify(this.namespace)}`,
        { details: { key, version } },
      )
    }
    const input = found.text === undefined ? undefined : (JSON.parse(found.text) as unknown)
    const result = await validate(validator, input)
    if (!result.ok) {
      throw valueInvalid(
        key,
        result.issues,
        `rollback refused: version ${version} no longer passes the schema`,
        {
          version,
        },
      )
    }
    return this.#write(key, found.text, result.value, 'rollback', tx, version)
  }

  /**
   * The key's changes, newest first: who (role, application), when, what, and rollbacks.
   * @throws HeraldError `INVALID_KEY`, `INVALID_OPTION`, `CLOSED`, `CONNECTION_FAILED`
   */
  async history<TKey extends ConfigKey<TSchema>>(
    key: TKey,
    options: HistoryOptions = {},
  ): Promise<ConfigHistoryEntry[]> {
    this.#validator(key)
    const limit = resolveLimit(options)
    this.#assertOpen()
    await this.#migrate()
    let rows
    try {
      rows = await this.#tables.history(key, limit)
    } catch (error) {
      throw queryFailed(error, `reading the history of config key ${JSON.stringify(key)} failed`)
    }
    return rows.map((row) => ({
      version: row.version,
      value: row.text === undefined ? undefined : (JSON.parse(row.text) as unknown),
      reset: row.text === undefined,
      changedAt: row.changedAt,
      changedBy: row.changedBy,
      applicationName: row.applicationName,
      rolledBackTo: row.rolledBackTo,
    }))
  }

  stats(): ConfigStats {
    return {
      version: this.#version,
      changes: this.#changes,
      hints: this.#hints,
      syncs: this.#syncs,
      resyncs: this.#resyncs,
      rejected: this.#rejected,
    }
  }

  /**
   * Unsubscribes and stops the poll; `get` keeps returning the last values, every write
   * rejects with `CLOSED`. Idempotent; does not close the Herald.
   */
  async close(): Promise<void> {
    if (this.#state === 'closed') return
    this.#state = 'closed'
    this.#untie()
    if (this.#pollTimer !== undefined) clearTimeout(this.#pollTimer)
    this.#pollTimer = undefined
    this.#options.herald.off('reconnected', this.#onReconnected)
    await this.#starting?.catch(() => {})
    await this.#subscription?.unsubscribe()
    this.#subscription = undefined
    await this.#syncing
    this.removeAllListeners()
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  async #write(
    key: string,
    text: string | undefined,
    value: unknown,
    reason: ChangeReason,
    tx: TransactionRunner | undefined,
    rolledBackTo?: number,
  ): Promise<number> {
    await this.#migrate()
    const { channel, herald } = this.#options
    const own = tx === undefined
    if (own) this.#ownWrites++
    try {
      let written: Written
      try {
        written = await this.#tables.write(
          key,
          text,
          { channel, origin: herald.origin },
          { tx, rolledBackTo },
        )
      } catch (error) {
        throw queryFailed(error, `writing config key ${JSON.stringify(key)} failed`)
      }
      if (own) await this.#applyOwn(key, written, value, reason)
      return written.version
    } finally {
      if (own && --this.#ownWrites === 0 && this.#deferredHint > this.#version && this.#state === 'ready') {
        void this.#sync()
      }
      if (this.#ownWrites === 0) this.#deferredHint = 0
    }
  }

  /**
   * Our own committed write: applied at once when it is the next version and no read is
   * running (the value was validated before writing); otherwise the history is read, so
   * versions are still applied in order. Either way `get` returns it when `set` resolves.
   */
  async #applyOwn(key: string, written: Written, value: unknown, reason: ChangeReason): Promise<void> {
    if (this.#state !== 'ready') return
    if (this.#syncing === undefined && written.version === this.#version + 1) {
      this.#version = written.version
      this.#change(key, { value, text: written.text }, written, reason)
      return
    }
    if (written.version > this.#version) await this.#sync()
  }

  #onMessage(body: unknown, meta: MessageMeta): void {
    if (meta.kind !== CONFIG_KIND || this.#state === 'closed') return
    const hint = decodeHint(body)
    if (hint === undefined) {
      this.#emitError(
        new HeraldError(
          'PAYLOAD_INVALID',
          `a '${CONFIG_KIND}' message on ${meta.channel} is not a config hint`,
          {
            details: { origin: meta.origin },
          },
        ),
      )
      // Maybe a producer we do not know: reading the history costs one query and cannot hurt.
    } else {
      if (hint.namespace !== this.namespace) return
      this.#hints++
      // Nothing to read: already applied (our own writes, duplicates).
      if (hint.version <= this.#version && this.#state === 'ready') return
    }
    if (this.#state !== 'ready') {
      this.#hinted = true
      return
    }
    // Our own hint often overtakes the answer to the write that sent it: that write applies
    // its version when it returns, and reads whatever is still missing then.
    if (hint !== undefined && meta.self && this.#ownWrites > 0) {
      this.#deferredHint = Math.max(this.#deferredHint, hint.version)
      return
    }
    void this.#sync()
  }

  readonly #onReconnected = (): void => {
    // Hints sent while the listener was down are lost: read whatever came after our version
    // (once the snapshot is applied, if the gap fell inside start()).
    if (this.#state === 'ready') void this.#sync()
    else if (this.#state === 'starting') this.#hinted = true
  }

  #schedulePoll(): void {
    const { pollMs } = this.#options
    if (pollMs === 0 || this.#state !== 'ready') return
    if (this.#pollTimer !== undefined) clearTimeout(this.#pollTimer)
    this.#pollTimer = setTimeout(() => {
      this.#pollTimer = undefined
      void this.#sync().finally(() => this.#schedulePoll())
    }, pollMs)
    this.#pollTimer.unref()
  }

  /**
   * Reads and applies everything after the current version. One read at a time; requests
   * during a read share the one that follows it, so a burst of hints costs two queries.
   * Never rejects: a failure is emitted, and the next hint, reconnect or poll tries again.
   */
  #sync(): Promise<void> {
    if (this.#syncing !== undefined) {
      this.#nextSync ??= this.#syncing.then(() => {
        this.#nextSync = undefined
        return this.#sync()
      })
      return this.#nextSync
    }
    const syncing = this.#catchUp()
      .catch((error: unknown) => this.#emitError(queryFailed(error, 'reading the config history failed')))
      .finally(() => {
        this.#syncing = undefined
      })
    this.#syncing = syncing
    return syncing
  }

  async #catchUp(): Promise<void> {
    for (;;) {
      if (this.#state !== 'ready') return
      const from = this.#version
      const { head, changes } = await this.#tables.changesAfter(from, SYNC_BATCH)
      this.#syncs++
      if (this.#state !== 'ready') return
      // Versions are gapless and commit in order, so the rows must continue from ours and,
      // unless the batch was cut, reach the head seen in the same snapshot. Anything else
      // means rows were deleted or the tables recreated: re-read every value instead.
      const contiguous = changes.every((change, index) => change.version === from + 1 + index)
      const last = changes.at(-1)?.version ?? from
      if (!contiguous || (changes.length < SYNC_BATCH && last !== head)) {
        await this.#resync(from)
        return
      }
      for (const change of changes) {
        await this.#applyChange(change)
        if (this.#state !== 'ready') return
      }
      if (changes.length < SYNC_BATCH) return
    }
  }

  async #applyChange(change: StoredChange): Promise<void> {
    const validator = Object.hasOwn(this.#schema, change.key) ? this.#schema[change.key] : undefined
    if (validator === undefined) {
      // A key this instance's schema does not know (a newer deploy's, a typo): not ours.
      this.#version = change.version
      return
    }
    const next = await this.#read(change.key, validator, change.text, change.version)
    this.#version = change.version
    if (next === undefined) return
    const reason: ChangeReason =
      change.rolledBackTo !== undefined ? 'rollback' : change.text === undefined ? 'reset' : 'set'
    this.#change(change.key, next, change, reason)
  }

  /** After a hole in the history: every stored value again, a change event for each that differs. */
  async #resync(from: number): Promise<void> {
    this.#resyncs++
    const snapshot = await this.#tables.snapshot()
    if (this.#state !== 'ready') return
    const stored = new Map(snapshot.values.map((value) => [value.key, value]))
    for (const [key, validator] of Object.entries(this.#schema)) {
      const row = stored.get(key)
      const entry = this.#entries.get(key)
      if (entry !== undefined && entry.text === row?.text) continue
      const next = await this.#read(key, validator, row?.text, row?.version ?? snapshot.head)
      if (this.#state !== 'ready') return
      if (next === undefined) continue
      this.#change(
        key,
        next,
        {
          version: row?.version ?? snapshot.head,
          changedAt: row?.changedAt ?? new Date(),
          changedBy: row?.changedBy ?? '',
        },
        'resync',
      )
    }
    this.#version = snapshot.head
    this.#emit('resync', { from, to: snapshot.head })
  }

  /** The first load: a key without a usable value and without a default fails `start()`. */
  async #loadSnapshot(values: readonly StoredValue[]): Promise<void> {
    const stored = new Map(values.map((value) => [value.key, value]))
    const missing: string[] = []
    const entries = new Map<string, Entry>()
    for (const [key, validator] of Object.entries(this.#schema)) {
      const row = stored.get(key)
      let entry = await this.#read(key, validator, row?.text, row?.version ?? 0)
      if (entry === undefined && row?.text !== undefined) {
        // The stored value was refused (and reported): the default is the last good value.
        const fallback = await validate(validator, undefined)
        if (fallback.ok) entry = { value: fallback.value, text: undefined }
      }
      if (entry === undefined) missing.push(key)
      else entries.set(key, entry)
    }
    if (missing.length > 0) {
      throw new HeraldError(
        'VALUE_INVALID',
        `config key${missing.length > 1 ? 's' : ''} ${missing.map((key) => JSON.stringify(key)).join(', ')} ` +
          `of namespace ${JSON.stringify(this.namespace)} ha${missing.length > 1 ? 've' : 's'} no valid stored value and no default: ` +
          'set it, or give the schema a default (or make it optional)',
        { details: { keys: missing, namespace: this.namespace } },
      )
    }
    for (const [key, entry] of entries) this.#entries.set(key, entry)
  }

  /**
   * A stored value through its validator; `undefined` text is the default. `undefined`
   * result: refused (an `error` event was emitted), keep what we have.
   */
  async #read(
    key: string,
    validator: StandardSchemaV1,
    text: string | undefined,
    version: number,
  ): Promise<Entry | undefined> {
    let input: unknown
    try {
      input = text === undefined ? undefined : JSON.parse(text)
    } catch {
      input = Symbol('unparsable')
    }
    const result = await validate(validator, input)
    if (result.ok) return { value: result.value, text }
    this.#rejected++
    this.#emitError(
      valueInvalid(
        key,
        result.issues,
        text === undefined
          ? `version ${version} reset the key, but it has no default; ignored, the last good value kept`
          : `the stored value of version ${version} is refused; ignored, the last good value kept`,
        { version, namespace: this.namespace },
      ),
    )
    return undefined
  }

  #change(
    key: string,
    next: Entry,
    change: { readonly version: number; readonly changedAt: Date; readonly changedBy: string },
    reason: ChangeReason,
  ): void {
    const previous = this.#entries.get(key)?.value
    this.#entries.set(key, next)
    this.#changes++
    const event = {
      key,
      value: next.value,
      previous,
      version: change.version,
      reason,
      changedAt: change.changedAt,
      changedBy: change.changedBy,
    }
    this.#emit('change', event)
    this.#emit(`change:${key}`, event)
  }

  async #migrate(): Promise<void> {
    if (!this.#options.migrate) return
    try {
      await ensureConfigTables(this.#sql(), this.#options.tableSchema)
    } catch (error) {
      throw queryFailed(error, 'creating the config tables failed')
    }
  }

  #sql(): Sql<Record<string, unknown>> {
    return this.#options.sql ?? this.#options.herald.sql
  }

  #validator(key: unknown): StandardSchemaV1 {
    assertKeyName(key)
    const validator = Object.hasOwn(this.#schema, key) ? this.#schema[key] : undefined
    if (validator === undefined) {
      throw new HeraldError('INVALID_KEY', `config key ${JSON.stringify(key)} is not in the schema`, {
        details: { key },
      })
    }
    return validator
  }

  #assertOpen(): void {
    if (this.#state === 'closed') throw closedError()
  }

  #assertStarting(): void {
    if (this.#state === 'closed') throw closedError()
  }

  #emitError(error: HeraldError): void {
    this.#emit('error', error)
  }

  /** Emits through `safeEmit`: a throwing listener becomes an `error` event, never a broken sync. */
  #emit(name: string, event: unknown): void {
    // The event map is generic over the schema, so TypeScript cannot relate it to `string` here.
    safeEmit(this, name, event)
  }
}

/** The caller's transaction, refused with `INVALID_OPTION` before anything is read or written. */
function transactionOf(options: WriteOptions, action: string): TransactionRunner | undefined {
  return options.tx === undefined ? undefined : toTransactionRunner(options.tx, action)
}

function closedError(): HeraldError {
  return new HeraldError('CLOSED', 'this config store is closed')
}
