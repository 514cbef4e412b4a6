export { ConfigStore } from './config-store.js'
export type { ConfigHistoryEntry, ConfigStats } from './config-store.js'
export type {
  AnyChangeEvent,
  ChangeEvent,
  ChangeReason,
  ConfigEvents,
  ReadyEvent,
  ResyncEvent,
} from './events.js'
export type { ConfigStoreOptions, HistoryOptions, WriteOptions } from './options.js'
export type { ConfigInput, ConfigKey, ConfigSchema, ConfigValue, ConfigValues } from './schema.js'
export { CONFIG_KIND } from './config-message.js'
export { CONFIG_SCHEMA_VERSION, configMigration, configTableSql } from './migrations.js'
