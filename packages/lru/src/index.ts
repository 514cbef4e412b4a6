export { InvalidatingCache } from './invalidating-cache.js'
export type { CacheStats, InvalidateOptions, SetOptions } from './invalidating-cache.js'
export type { CacheEvents, EvictEvent, EvictReason, FlushEvent, ReplayEvent } from './events.js'
export type { DurableOptions, InvalidatingCacheOptions, LruOptions } from './options.js'
export type { LoadDb, ReplicaOptions } from './replica-guard.js'
export { INVALIDATION_KIND } from './invalidation-message.js'
export { LOG_SCHEMA_VERSION, logTableSql, outboxTableSql } from './schema.js'
export { OutboxRelay } from './outbox-relay.js'
export type { OutboxRelayEvents, OutboxRelayOptions, OutboxRelayStats } from './outbox-relay.js'
export {
  installInvalidationTrigger,
  removeInvalidationTrigger,
  listInvalidationTriggers,
  invalidationTriggerSql,
  TRIGGER_ORIGIN,
  type InvalidationTriggerOptions,
  type InvalidationTriggerTarget,
  type InvalidationTriggerInfo,
} from './trigger.js'
