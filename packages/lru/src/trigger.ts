import { createHash, randomBytes } from 'node:crypto'
import {
  assertChannelName,
  assertPlainIdentifier,
  HeraldError,
  MAX_NOTIFY_BYTES,
  quoteIdentifier,
} from '@herald/core'
import type { Sql } from 'postgres'
import { INVALIDATION_KIND } from './invalidation-message.js'
import { ensureLogTables, ensureOutbox } from './schema.js'

/**
 * Options of {@link installInvalidationTrigger}.
 *
 * `key` and `tags` are **SQL expressions**, spliced into the trigger function as written: they
 * are trusted input, like any DDL you run. Give them from your code or your migrations, never
 * from a request.
 */
export interface InvalidationTriggerOptions {
  /** The table whose writes invalidate: its plain name, not schema-qualified (see `schema`). */
  table: string
  /** Schema of the table. @default 'public' */
  schema?: string
  /** Name of the `InvalidatingCache` whose keys the writes evict (its `name` option). */
  cache: string
  /**
   * SQL expression over a row giving its cache key, as the application spells it: for
   * `cache.getOrLoad(\`user:${id}\`, ...)`, `'user:' || id`. Several expressions for rows
   * cached under several keys; a set-returning function (`'tag:' || unnest(tag_ids)`) gives a
   * row one key per element. Results are cast to text; null and empty keys are skipped. The
   * row's columns can be qualified with the table name (`users.id`). Not an aggregate, a
   * window function or an array: installing fails.
   */
  key: string | readonly string[]
  /** SQL expression(s) over a row giving tags to evict (`'org:' || org_id`), as `invalidateTags` would. */
  tags?: string | readonly string[]
  /** The cache's channel. @default 'cache_invalidation' */
  channel?: string
  /**
   * Also record each message in the durable invalidation log (`<schema>.cache_invalidations`),
   * in the writing transaction, so that caches in durable mode replay trigger invalidations
   * they missed. `true`, or `{ schema = 'herald', migrate = true }` as for the cache.
   * @default false
   */
  durable?: boolean | { schema?: string; migrate?: boolean }
  /**
   * Write the messages to `<schema>.notify_outbox` instead of NOTIFYing. A transaction that
   * NOTIFYs takes a server-wide lock at commit, so writers with NOTIFY triggers commit one at a
   * time; with `relay` they only insert a row, and an {@link OutboxRelay} (run one or more in
   * your instances) sends the committed rows, many per commit of its own. The rows are
   * committed with the write, so a relay that dies loses nothing; messages arrive when a relay
   * next looks (within `idleMs`, 5 ms by default, when idle). `true`, or
   * `{ schema = 'herald', migrate = true }`.
   * @default false
   */
  relay?: boolean | { schema?: string; migrate?: boolean }
  /**
   * A statement touching more distinct keys and tags than this sends one "flush this cache"
   * message instead (keys are never dropped). Below it, keys travel in as many complete
   * envelopes of at most one NOTIFY (7999 bytes) each as they need: about 300 keys of 20
   * characters per NOTIFY.
   * @default 100000
   */
  flushAboveKeys?: number
}

/** Identifies an installed trigger: its table and cache. */
export interface InvalidationTriggerTarget {
  table: string
  /** @default 'public' */
  schema?: string
  cache: string
}

/** An installed invalidation trigger, as `listInvalidationTriggers` reads it back. */
export interface InvalidationTriggerInfo {
  readonly schema: string
  readonly table: string
  readonly cache: string
  readonly channel: string
  readonly key: readonly string[]
  readonly tags: readonly string[]
  /** Schema of the durable log it writes to, when durable. */
  readonly logSchema: string | undefined
  /** Schema of the outbox it writes its messages to, in relay mode (else it NOTIFYs). */
  readonly outboxSchema: string | undefined
  readonly flushAboveKeys: number
  /** The trigger function, schema-qualified and quoted. */
  readonly function: string
  /** The triggers on the table: after insert, update, delete (per statement) and truncate. */
  readonly triggers: readonly string[]
}

/** The envelope origin of every trigger message (`meta.origin`). */
export const TRIGGER_ORIGIN = 'trigger'

const DEFAULT_CHANNEL = 'cache_invalidation'
const DEFAULT_FLUSH_ABOVE_KEYS = 100_000
/** The comment on every trigger function, followed by its options as JSON: how `list` finds them. */
const COMMENT_PREFIX = 'herald-invalidation-trigger '
const MAX_IDENTIFIER_BYTES = 63
/**
 * An envelope over the NOTIFY limit (only a key or tag of several kilobytes makes one) is
 * sent as chunk frames with fragments of at most this many bytes; the header
 * (`~trigger.<32 hex>:<index>:<count>\n`) takes at most 57 more.
 */
const FRAGMENT_BYTES = 7_900
/** Room for `,"l":["<id>","<txid>"]`: two 20-digit numbers. */
const LOG_REF_BYTES = Buffer.byteLength(`,"l":["${'9'.repeat(20)}","${'9'.repeat(20)}"]`)

interface ResolvedTrigger {
  readonly schema: string
  readonly table: string
  readonly cache: string
  readonly channel: string
  readonly key: readonly string[]
  readonly tags: readonly string[]
  readonly logSchema: string | undefined
  readonly migrateLog: boolean
  readonly outboxSchema: string | undefined
  readonly migrateOutbox: boolean
  readonly flushAboveKeys: number
  readonly functionName: string
  readonly triggerNames: readonly string[]
}

/**
 * Installs statement-level triggers so that every INSERT, UPDATE, DELETE and TRUNCATE of
 * `table`, by any client — raw SQL, bulk updates, psql, another service — evicts the keys
 * derived from the old and the new rows from the cache `cache` on every instance. One
 * statement sends one message (the distinct keys of all its rows, in as many complete
 * envelopes as fit NOTIFY's limit), delivered at commit, never on rollback; TRUNCATE, or a
 * statement touching more than `flushAboveKeys` keys, flushes the cache. Replaces an
 * existing trigger of the same table and cache.
 *
 * The expressions are checked before anything is created — against the table's columns, in
 * the very query the trigger runs — so a bad one fails here, not at the first write; the
 * function and its triggers are then created in one implicit transaction.
 * @throws HeraldError `INVALID_OPTION` (bad options, a missing table, a bad expression), `INVALID_CHANNEL`, `CONNECTION_FAILED`
 */
export async function installInvalidationTrigger(
  sql: Sql<Record<string, unknown>>,
  options: InvalidationTriggerOptions,
): Promise<InvalidationTriggerInfo> {
  const trigger = resolveTrigger(options)
  await assertTable(sql, trigger)
  for (const [kind, expressions] of [
    ['key', trigger.key],
    ['tag', trigger.tags],
  ] as const) {
    for (const expression of expressions) await assertExpression(sql, trigger, kind, expression)
  }
  if (trigger.logSchema !== undefined && trigger.migrateLog) {
    await run(() => ensureLogTables(sql, trigger.logSchema as string), 'creating the durable log failed')
  }
  if (trigger.outboxSchema !== undefined && trigger.migrateOutbox) {
    await run(() => ensureOutbox(sql, trigger.outboxSchema as string), 'creating the outbox failed')
  }
  // A trigger of this cache left under another function name (the table was renamed since).
  const stale = (await installedFunctions(sql, trigger)).filter((name) => name !== qualifiedFunction(trigger))
  await run(
    () =>
      sql.unsafe(
        [...stale.map((name) => `drop function if exists ${name}() cascade;`), triggerDdl(trigger)].join(
          '\n',
        ),
      ),
    `installing the invalidation trigger on ${qualifiedTable(trigger)} failed`,
  )
  return info(trigger)
}

/**
 * Drops the triggers and function of `cache` on `table`. Resolves to `false` when there was
 * none. Caches are not told: keys cached until now stay until evicted some other way.
 * @throws HeraldError `INVALID_OPTION`, `CONNECTION_FAILED`
 */
export async function removeInvalidationTrigger(
  sql: Sql<Record<string, unknown>>,
  options: InvalidationTriggerTarget,
): Promise<boolean> {
  const target = resolveTarget(options)
  const names = new Set(await installedFunctions(sql, target))
  // The table may be gone (and its triggers with it) while the function stays.
  const [row] = await run(
    () =>
      sql<
        { found: boolean }[]
      >`select to_regprocedure(${`${qualifiedFunction(target)}()`}) is not null as found`,
    'looking up the trigger function failed',
  )
  if (row?.found === true) names.add(qualifiedFunction(target))
  if (names.size === 0) return false
  await run(
    () => sql.unsafe([...names].map((name) => `drop function if exists ${name}() cascade;`).join('\n')),
    `removing the invalidation trigger of ${target.cache} failed`,
  )
  return true
}

/**
 * Every invalidation trigger installed in the database (or in `schema`, or on `table`), read
 * from the catalog.
 * @throws HeraldError `CONNECTION_FAILED`
 */
export async function listInvalidationTriggers(
  sql: Sql<Record<string, unknown>>,
  filter: { schema?: string; table?: string } = {},
): Promise<InvalidationTriggerInfo[]> {
  const rows = await run(
    () => sql<{ schema: string; table: string; function: string; comment: string; triggers: string[] }[]>`
      select n.nspname as schema, c.relname as table,
             ${sql.unsafe(quotedName('pn.nspname', 'p.proname'))} as function,
             d.description as comment, array_agg(t.tgname::text order by t.tgname) as triggers
      from pg_description d
      join pg_proc p on p.oid = d.objoid and d.classoid = 'pg_proc'::regclass
      join pg_namespace pn on pn.oid = p.pronamespace
      join pg_trigger t on t.tgfoid = p.oid
      join pg_class c on c.oid = t.tgrelid
      join pg_namespace n on n.oid = c.relnamespace
      where starts_with(d.description, ${COMMENT_PREFIX})
        and (${filter.schema ?? null}::text is null or n.nspname = ${filter.schema ?? null})
        and (${filter.table ?? null}::text is null or c.relname = ${filter.table ?? null})
      group by 1, 2, 3, 4
      order by 1, 2, 3`,
    'listing invalidation triggers failed',
  )
  const found: InvalidationTriggerInfo[] = []
  for (const row of rows) {
    const stored = parseComment(row.comment)
    if (stored === undefined) continue
    found.push({
      schema: row.schema,
      table: row.table,
      cache: stored.cache,
      channel: stored.channel,
      key: stored.key,
      tags: stored.tags,
      logSchema: stored.logSchema,
      outboxSchema: stored.outboxSchema,
      flushAboveKeys: stored.flushAboveKeys,
      function: row.function,
      triggers: row.triggers,
    })
  }
  return found
}

/**
 * The DDL `installInvalidationTrigger` runs, for teams that keep triggers in their own
 * migrations. Nothing is checked against a database: run it in a transaction, and a bad
 * expression fails there (or, for a mistake only planning reveals, at the first write).
 * @throws HeraldError `INVALID_OPTION`, `INVALID_CHANNEL`
 */
export function invalidationTriggerSql(options: InvalidationTriggerOptions): string {
  const trigger = resolveTrigger(options)
  const log =
    trigger.logSchema === undefined
      ? ''
      : `-- Needs the durable log tables: migrate() / \`herald migrate\` (schema ${trigger.logSchema}).\n`
  const outbox =
    trigger.outboxSchema === undefined
      ? ''
      : `-- Needs the outbox table: migrate() / \`herald migrate\` (schema ${trigger.outboxSchema}).\n`
  return `${log}${outbox}${triggerDdl(trigger)}\n`
}

// ---------------------------------------------------------------------------------------------
// Options

function resolveTrigger(options: InvalidationTriggerOptions): ResolvedTrigger {
  if (typeof options !== 'object' || options === null) {
    throw new HeraldError('INVALID_OPTION', 'installInvalidationTrigger needs an options object')
  }
  const target = resolveTarget(options)
  const key = expressions('key', options.key)
  if (key.length === 0) throw new HeraldError('INVALID_OPTION', 'key must be at least one SQL expression')
  const tags = options.tags === undefined ? [] : expressions('tags', options.tags)
  const channel = assertChannelName(options.channel ?? DEFAULT_CHANNEL)
  const flushAboveKeys = options.flushAboveKeys ?? DEFAULT_FLUSH_ABOVE_KEYS
  if (!Number.isSafeInteger(flushAboveKeys) || flushAboveKeys < 1) {
    throw new HeraldError(
      'INVALID_OPTION',
      `flushAboveKeys must be a positive integer, got ${String(flushAboveKeys)}`,
    )
  }
  const { schema: logSchema, migrate: migrateLog } = tablesOption('durable', options.durable)
  const { schema: outboxSchema, migrate: migrateOutbox } = tablesOption('relay', options.relay)
  return {
    ...target,
    key,
    tags,
    channel,
    flushAboveKeys,
    logSchema,
    migrateLog,
    outboxSchema,
    migrateOutbox,
  }
}

/** `durable` and `relay`: `true`, or `{ schema = 'herald', migrate = true }`, for the tables they write to. */
function tablesOption(
  what: 'durable' | 'relay',
  value: boolean | { schema?: string; migrate?: boolean } | undefined,
): { schema: string | undefined; migrate: boolean } {
  if (value === undefined || value === false) return { schema: undefined, migrate: false }
  if (value === true) return { schema: 'herald', migrate: true }
  if (typeof value === 'object' && value !== null) {
    return {
      schema: assertPlainIdentifier(`${what}.schema`, value.schema ?? 'herald'),
      migrate: value.migrate ?? true,
    }
  }
  throw new HeraldError('INVALID_OPTION', `${what} must be a boolean or { schema?, migrate? }`)
}

function resolveTarget(options: InvalidationTriggerTarget): ResolvedTrigger {
  const schema = name('schema', options.schema ?? 'public')
  const table = name('table', options.table)
  const cache = options.cache
  if (typeof cache !== 'string' || cache.length === 0 || cache.length > 200) {
    throw new HeraldError(
      'INVALID_OPTION',
      `cache must be a string of 1 to 200 characters, got ${JSON.stringify(cache)}`,
    )
  }
  const hash = createHash('sha256').update(`${schema}\0${table}\0${cache}`).digest('hex').slice(0, 8)
  const triggerBase = fit(`herald_inv_${cache}`, `_${hash}_truncate`)
  return {
    schema,
    table,
    cache,
    channel: DEFAULT_CHANNEL,
    key: [],
    tags: [],
    logSchema: undefined,
    migrateLog: false,
    outboxSchema: undefined,
    migrateOutbox: false,
    flushAboveKeys: DEFAULT_FLUSH_ABOVE_KEYS,
    functionName: `${fit(`herald_inv_${table}_${cache}`, `_${hash}`)}_${hash}`,
    triggerNames: ['insert', 'update', 'delete', 'truncate'].map((op) => `${triggerBase}_${hash}_${op}`),
  }
}

/** `text` cut (by whole characters) so that `text + suffix` fits an identifier. */
function fit(text: string, suffix: string): string {
  const budget = MAX_IDENTIFIER_BYTES - Buffer.byteLength(suffix)
  let fitted = text
  while (Buffer.byteLength(fitted) > budget) fitted = [...fitted].slice(0, -1).join('')
  return fitted
}

function name(what: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0 || Buffer.byteLength(value) > MAX_IDENTIFIER_BYTES) {
    throw new HeraldError(
      'INVALID_OPTION',
      `${what} must be a name of 1 to 63 bytes, got ${JSON.stringify(value)}`,
    )
  }
  if (value.includes('\0')) throw new HeraldError('INVALID_OPTION', `${what} must not hold a NUL character`)
  return value
}

function expressions(what: string, value: unknown): string[] {
  const list: unknown[] = typeof value === 'string' ? [value] : Array.isArray(value) ? value : [value]
  for (const item of list) {
    if (typeof item !== 'string' || item.trim().length === 0) {
      throw new HeraldError('INVALID_OPTION', `${what} must be SQL expressions (non-empty strings)`)
    }
  }
  return list as string[]
}

// ---------------------------------------------------------------------------------------------
// Checks against the database

async function assertTable(sql: Sql<Record<string, unknown>>, trigger: ResolvedTrigger): Promise<void> {
  const [row] = await run(
    () => sql<{ kind: string }[]>`
      select c.relkind::text as kind from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = ${trigger.schema} and c.relname = ${trigger.table}`,
    'looking up the table failed',
  )
  if (row === undefined) {
    throw new HeraldError('INVALID_OPTION', `table ${qualifiedTable(trigger)} does not exist`, {
      details: { schema: trigger.schema, table: trigger.table },
    })
  }
  if (row.kind !== 'r' && row.kind !== 'p') {
    throw new HeraldError(
      'INVALID_OPTION',
      `${qualifiedTable(trigger)} is not a table (relkind ${row.kind}): invalidation triggers need a table or a partitioned table`,
    )
  }
}

/**
 * Checks an expression by describing (parsing and analysing, not running) the query the
 * trigger runs, with a CTE of the table's columns in place of the transition table: an
 * unknown column, a type error, a system column (transition tables have none) fail here as
 * they would at the first write; so do an aggregate and an array, which would not fail but
 * would not be a key either. The extended protocol also refuses a second statement smuggled
 * into the expression.
 */
async function assertExpression(
  sql: Sql<Record<string, unknown>>,
  trigger: ResolvedTrigger,
  kind: 'key' | 'tag',
  expression: string,
): Promise<void> {
  const rows = `select * from ${qualifiedTable(trigger)} limit 0`
  const alias = quoteIdentifier(trigger.table)
  let type: number | undefined
  const describe = (query: string) =>
    sql.unsafe(`with herald_new as (${rows}) ${query}`, [], { prepare: false }).describe()
  try {
    type = (await describe(`select (${expression}) as v from herald_new as ${alias}`)).columns[0]?.type
    // The trigger's own query.
    await describe(`select ${collectItems('herald_new', alias, [expression])}`)
    // A row's key cannot be an aggregate or a window function (GROUP BY refuses both, and
    // accepts a set-returning function, which gives a row several keys).
    await describe(`select count(*) from herald_new as ${alias} group by (${expression})`)
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    throw new HeraldError(
      'INVALID_OPTION',
      `${kind} expression ${JSON.stringify(expression)} is not valid over ${qualifiedTable(trigger)}: ${reason}`,
      { cause: error, details: { expression, ...sqlStateOf(error) } },
    )
  }
  if (type === undefined) return
  const [row] = await run(
    () => sql<{ array: boolean; name: string }[]>`
      select typcategory = 'A' as array, format_type(oid, null) as name from pg_type where oid = ${type}`,
    'looking up an expression type failed',
  )
  if (row?.array === true) {
    throw new HeraldError(
      'INVALID_OPTION',
      `${kind} expression ${JSON.stringify(expression)} is of type ${row.name}: give a list of expressions, or unnest(...) for one ${kind} per element`,
      { details: { expression } },
    )
  }
}

async function installedFunctions(
  sql: Sql<Record<string, unknown>>,
  target: ResolvedTrigger,
): Promise<string[]> {
  const rows = await run(
    () => sql<{ function: string; comment: string }[]>`
      select distinct ${sql.unsafe(quotedName('n.nspname', 'p.proname'))} as function,
             d.description as comment
      from pg_trigger t
      join pg_proc p on p.oid = t.tgfoid
      join pg_namespace n on n.oid = p.pronamespace
      join pg_description d on d.objoid = p.oid and d.classoid = 'pg_proc'::regclass
      where t.tgrelid = to_regclass(${qualifiedTable(target)}) and starts_with(d.description, ${COMMENT_PREFIX})`,
    'looking up installed triggers failed',
  )
  return rows.filter((row) => parseComment(row.comment)?.cache === target.cache).map((row) => row.function)
}

// ---------------------------------------------------------------------------------------------
// The trigger function

/** SQL for `"schema"."name"`, always quoted like `quoteIdentifier` (quote_ident quotes only when needed). */
function quotedName(schema: string, name: string): string {
  return `'"' || replace(${schema}, '"', '""') || '"."' || replace(${name}, '"', '""') || '"'`
}

function qualifiedTable(target: Pick<ResolvedTrigger, 'schema' | 'table'>): string {
  return `${quoteIdentifier(target.schema)}.${quoteIdentifier(target.table)}`
}

function qualifiedFunction(target: Pick<ResolvedTrigger, 'schema' | 'functionName'>): string {
  return `${quoteIdentifier(target.schema)}.${quoteIdentifier(target.functionName)}`
}

/**
 * `array(distinct non-empty values of the expressions over the rows)`: rows are `source`
 * (a transition table, or the union of both) under the table's own name, so expressions may
 * qualify columns with it. One plain select per expression (a lateral unnest per row costs
 * three times as much), deduplicated by sorting or hashing in the "C" collation.
 */
function collectItems(source: string, alias: string, list: readonly string[]): string {
  if (list.length === 0) return `'{}'::text[]`
  const selects = list
    .map((expression) => `select (${expression})::text as v from ${source} as ${alias}`)
    .join('\n        union all ')
  return `array(select distinct herald_item.v collate "C" from (
        ${selects}
      ) as herald_item where herald_item.v <> '')`
}

/**
 * Statement-level AFTER triggers with transition tables: INSERT sees only the new rows,
 * DELETE only the old, UPDATE both; one function serves all three (each branch plans only
 * the transition tables of its event) and TRUNCATE, which has none and flushes.
 */
function triggerDdl(trigger: ResolvedTrigger): string {
  const table = qualifiedTable(trigger)
  const fn = qualifiedFunction(trigger)
  const alias = quoteIdentifier(trigger.table)
  const body = functionBody(trigger, alias)
  let tag = `$herald_${randomBytes(4).toString('hex')}$`
  while (body.includes(tag)) tag = `$herald_${randomBytes(4).toString('hex')}$`
  const [insert, update, remove, truncate] = trigger.triggerNames.map(quoteIdentifier)
  const comment = `${COMMENT_PREFIX}${JSON.stringify({
    cache: trigger.cache,
    channel: trigger.channel,
    key: trigger.key,
    tags: trigger.tags,
    logSchema: trigger.logSchema ?? null,
    outboxSchema: trigger.outboxSchema ?? null,
    flushAboveKeys: trigger.flushAboveKeys,
  })}`
  return `create or replace function ${fn}() returns trigger language plpgsql as ${tag}
${body}
${tag};
comment on function ${fn}() is ${literal(comment)};
drop trigger if exists ${insert} on ${table};
drop trigger if exists ${update} on ${table};
drop trigger if exists ${remove} on ${table};
drop trigger if exists ${truncate} on ${table};
create trigger ${insert} after insert on ${table}
  referencing new table as herald_new for each statement execute function ${fn}();
create trigger ${update} after update on ${table}
  referencing old table as herald_old new table as herald_new for each statement execute function ${fn}();
create trigger ${remove} after delete on ${table}
  referencing old table as herald_old for each statement execute function ${fn}();
create trigger ${truncate} after truncate on ${table}
  for each statement execute function ${fn}();`
}

function functionBody(trigger: ResolvedTrigger, alias: string): string {
  const collect = (source: string): string =>
    `select ${collectItems(source, alias, trigger.key)},
           ${collectItems(source, alias, trigger.tags)}
      into v_keys, v_tags;`
  const head = `{"v":1,"o":${JSON.stringify(TRIGGER_ORIGIN)},"k":${JSON.stringify(INVALIDATION_KIND)},"b":{"c":${JSON.stringify(trigger.cache)}`
  // What an envelope holds besides its keys and tags: head, list names, log reference, braces.
  const overhead = Buffer.byteLength(`${head},"k":,"t":}}`) + LOG_REF_BYTES
  const budget = MAX_NOTIFY_BYTES - overhead
  const log =
    trigger.logSchema === undefined ? undefined : `${quoteIdentifier(trigger.logSchema)}.cache_invalidations`
  const cache = literal(trigger.cache)
  const channel = literal(trigger.channel)
  // One NOTIFY, or (relay) one outbox row that a relay will NOTIFY after commit.
  const send = (payload: string): string =>
    trigger.outboxSchema === undefined
      ? `perform pg_notify(${channel}, ${payload});`
      : `insert into ${quoteIdentifier(trigger.outboxSchema)}.notify_outbox (channel, payload) values (${channel}, ${payload});`
  const logRef = `
      v_body := v_body || ',"l":["' || v_log_id || '","' || v_log_tx || '"]';`
  const logFlush =
    log === undefined
      ? ''
      : `
    insert into ${log} (cache, flush) values (${cache}, true)
      returning id::text, tx::text into v_log_id, v_log_tx;${logRef}`
  const logBatch =
    log === undefined
      ? ''
      : `
      insert into ${log} (cache, keys, tags) values (${cache}, v_keys_json::jsonb, v_tags_json::jsonb)
        returning id::text, tx::text into v_log_id, v_log_tx;${logRef}`
  // The envelope of v_keys_json / v_tags_json (either may be null), logged when durable.
  const seal = `
      v_body := ${literal(head)}
        || case when v_keys_json is null then '' else ',"k":' || v_keys_json end
        || case when v_tags_json is null then '' else ',"t":' || v_tags_json end;${logBatch}
      v_envelopes := v_envelopes || (v_body || '}}');`
  // Keys, then tags, in slices of about `v_per` items: the estimate comes from the average
  // length, and a slice whose JSON turns out too long (escapes, a few long keys) is halved
  // until it fits or holds one item, which then travels as chunk frames.
  const slices = (list: 'keys' | 'tags', other: 'tags' | 'keys'): string => `
    v_count := cardinality(v_${list});
    if v_count > 0 then
      v_per := greatest(1, floor(${budget} * 0.95 / (octet_length(array_to_string(v_${list}, ''))::numeric / v_count + 3)))::integer;
      v_lo := 1;
      while v_lo <= v_count loop
        v_hi := least(v_count, v_lo + v_per - 1);
        loop
          v_${list}_json := array_to_json(v_${list}[v_lo:v_hi])::text;
          exit when v_hi = v_lo or octet_length(v_${list}_json) <= ${budget};
          v_hi := v_lo + (v_hi - v_lo) / 2;
        end loop;
        v_${other}_json := null;${seal}
        v_lo := v_hi + 1;
      end loop;
    end if;`
  return `#variable_conflict use_column
-- Installed by @herald/lru installInvalidationTrigger (see listInvalidationTriggers).
-- Columns win over the variables below, so an expression may name a column v_keys.
declare
  v_keys text[];
  v_tags text[];
  v_keys_json text;
  v_tags_json text;
  v_count integer;
  v_per integer;
  v_lo integer;
  v_hi integer;
  v_body text;
  v_envelopes text[] := '{}';
  v_envelope text;
  v_log_id text;
  v_log_tx text;
  v_message_id text;
  v_fragments text[];
  v_fragment text;
  v_rest text;
  v_over integer;
begin
  if tg_op = 'INSERT' then
    ${collect('herald_new')}
  elsif tg_op = 'DELETE' then
    ${collect('herald_old')}
  elsif tg_op = 'UPDATE' then
    ${collect('(select * from herald_old union all select * from herald_new)')}
  end if;

  if tg_op = 'TRUNCATE' or cardinality(v_keys) + cardinality(v_tags) > ${trigger.flushAboveKeys} then
    v_body := ${literal(`${head},"f":1`)};${logFlush}
    v_envelopes := array[v_body || '}}'];
  elsif cardinality(v_keys) + cardinality(v_tags) = 0 then
    return null;
  else
    -- Most statements: every key and tag in one envelope.
    v_keys_json := case when cardinality(v_keys) > 0 then array_to_json(v_keys)::text end;
    v_tags_json := case when cardinality(v_tags) > 0 then array_to_json(v_tags)::text end;
    if coalesce(octet_length(v_keys_json), 0) + coalesce(octet_length(v_tags_json), 0) <= ${budget} then${seal}
    else${slices('keys', 'tags')}${slices('tags', 'keys')}
    end if;
  end if;

  foreach v_envelope in array v_envelopes loop
    if octet_length(v_envelope) <= ${MAX_NOTIFY_BYTES} then
      ${send('v_envelope')}
    else
      -- Chunk frames, split on character boundaries. A character is 1 to 4 bytes, so each pass
      -- drops at least one character and about as many as the overshoot needs at 4 bytes each:
      -- the fragment shrinks within budget and never to nothing.
      v_message_id := ${literal(`${TRIGGER_ORIGIN}.`)} || md5(random()::text || clock_timestamp()::text);
      v_fragments := '{}';
      v_rest := v_envelope;
      while v_rest <> '' loop
        v_fragment := left(v_rest, ${FRAGMENT_BYTES});
        while octet_length(v_fragment) > ${FRAGMENT_BYTES} loop
          v_over := octet_length(v_fragment) - ${FRAGMENT_BYTES};
          v_fragment := left(v_fragment, char_length(v_fragment) - greatest(1, (v_over + 3) / 4));
        end loop;
        v_fragments := v_fragments || v_fragment;
        v_rest := substr(v_rest, char_length(v_fragment) + 1);
      end loop;
      for i in 1 .. cardinality(v_fragments) loop
        ${send("'~' || v_message_id || ':' || (i - 1) || ':' || cardinality(v_fragments) || chr(10) || v_fragments[i]")}
      end loop;
    end if;
  end loop;
  return null;
end;`
}

/** A string literal that means the same whatever `standard_conforming_strings` says. */
function literal(text: string): string {
  return `E'${text.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`
}

function info(trigger: ResolvedTrigger): InvalidationTriggerInfo {
  return {
    schema: trigger.schema,
    table: trigger.table,
    cache: trigger.cache,
    channel: trigger.channel,
    key: trigger.key,
    tags: trigger.tags,
    logSchema: trigger.logSchema,
    outboxSchema: trigger.outboxSchema,
    flushAboveKeys: trigger.flushAboveKeys,
    function: qualifiedFunction(trigger),
    triggers: trigger.triggerNames,
  }
}

interface StoredOptions {
  readonly cache: string
  readonly channel: string
  readonly key: string[]
  readonly tags: string[]
  readonly logSchema: string | undefined
  readonly outboxSchema: string | undefined
  readonly flushAboveKeys: number
}

function parseComment(comment: string): StoredOptions | undefined {
  try {
    const value = JSON.parse(comment.slice(COMMENT_PREFIX.length)) as Record<string, unknown>
    const strings = (list: unknown): string[] =>
      Array.isArray(list) ? list.filter((item): item is string => typeof item === 'string') : []
    if (typeof value['cache'] !== 'string') return undefined
    return {
      cache: value['cache'],
      channel: typeof value['channel'] === 'string' ? value['channel'] : DEFAULT_CHANNEL,
      key: strings(value['key']),
      tags: strings(value['tags']),
      logSchema: typeof value['logSchema'] === 'string' ? value['logSchema'] : undefined,
      outboxSchema: typeof value['outboxSchema'] === 'string' ? value['outboxSchema'] : undefined,
      flushAboveKeys:
        typeof value['flushAboveKeys'] === 'number' ? value['flushAboveKeys'] : DEFAULT_FLUSH_ABOVE_KEYS,
    }
  } catch {
    return undefined
  }
}

function sqlStateOf(error: unknown): { sqlState?: string } {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? { sqlState: code } : {}
}

/** Runs a query, wrapping a driver failure in a HeraldError. */
async function run<T>(query: () => Promise<T>, action: string): Promise<T> {
  try {
    return await query()
  } catch (error) {
    if (error instanceof HeraldError) throw error
    const reason = error instanceof Error ? error.message : String(error)
    throw new HeraldError('CONNECTION_FAILED', `${action}: ${reason}`, {
      cause: error,
      details: sqlStateOf(error),
    })
  }
}
