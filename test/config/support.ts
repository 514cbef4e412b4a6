import type { Herald } from '@herald/core'
import { ConfigStore, type ConfigSchema, type ConfigStoreOptions } from '@herald/config'
import { uniqueName } from '@herald/testing'
import { afterEach } from 'vitest'
import { z } from 'zod'

const open = new Set<ConfigStore<ConfigSchema>>()

/** The schema most tests share. */
export const appSchema = {
  rateLimit: z.number().int().positive().default(100),
  banner: z.string().optional(),
  features: z.object({ search: z.boolean(), beta: z.array(z.string()) }).default({ search: false, beta: [] }),
}

/** A ConfigStore closed by afterEach, whatever the test did; not started. */
export function newConfig<TSchema extends ConfigSchema>(
  herald: Herald,
  options: Omit<ConfigStoreOptions<TSchema>, 'herald'>,
): ConfigStore<TSchema> {
  const config = new ConfigStore<TSchema>({ herald, ...options })
  open.add(config as unknown as ConfigStore<ConfigSchema>)
  return config
}

/** A started ConfigStore on `namespace`, closed by afterEach. */
export async function startedConfig<TSchema extends ConfigSchema = typeof appSchema>(
  herald: Herald,
  namespace: string,
  options: Partial<Omit<ConfigStoreOptions<TSchema>, 'herald'>> = {},
): Promise<ConfigStore<TSchema>> {
  const config = newConfig<TSchema>(herald, {
    schema: appSchema as unknown as TSchema,
    namespace,
    pollMs: 0,
    ...options,
  })
  await config.start()
  return config
}

export function namespace(prefix = 'cfg'): string {
  return uniqueName(prefix)
}

afterEach(async () => {
  const stores = [...open]
  open.clear()
  await Promise.all(stores.map((store) => store.close()))
})

/** Records every event of a store. */
export function record<TSchema extends ConfigSchema>(store: ConfigStore<TSchema>) {
  const config = store as unknown as ConfigStore<ConfigSchema>
  const changes: { key: string; value: unknown; previous: unknown; version: number; reason: string }[] = []
  const errors: { code: string; message: string }[] = []
  config.on('change', ({ key, value, previous, version, reason }) =>
    changes.push({ key, value, previous, version, reason }),
  )
  config.on('error', (error) => errors.push({ code: error.code, message: error.message }))
  return { changes, errors }
}

/**
 * The documented way to change a value from SQL (psql, a migration): the same single
 * statement `set` runs, with the envelope built in SQL.
 */
export function sqlSetStatement(schema = 'herald'): string {
  return `
with head as (
  insert into ${schema}.config_heads as h (namespace, version) values ($1, 1)
  on conflict (namespace) do update set version = h.version + 1
  returning version
), stored as (
  insert into ${schema}.config_values as v (namespace, key, value, version)
  select $1, $2, $3::text::jsonb, version from head
  on conflict (namespace, key) do update
    set value = excluded.value, version = excluded.version, updated_at = now(), updated_by = current_user
), logged as (
  insert into ${schema}.config_history (namespace, version, key, value)
  select $1, version, $2, $3::text::jsonb from head
  returning version
)
select version, pg_notify('herald_config', json_build_object('v', 1, 'o', 'sql', 'k', 'config',
  'b', json_build_object('n', $1, 'v', version))::text)
from logged`
}
