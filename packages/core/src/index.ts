export { Herald } from './herald.js'
export type { Closable, HeraldStats, PublishOptions, SubscribeOptions } from './herald.js'
export { Subscription } from './subscription.js'
export type { MessageHandler, MessageMeta, SubscriptionStats } from './subscription.js'
export { HeraldError, isHeraldError, sqlState, toConnectionError } from './errors.js'
export type { HeraldErrorCode, HeraldErrorOptions } from './errors.js'
export { safeEmit } from './events.js'
export type { Emitting } from './events.js'
export type {
  ConnectedEvent,
  DisconnectedEvent,
  HeraldEvents,
  ReconnectedEvent,
  ReconnectingEvent,
} from './events.js'
export { checkConnection, type ConnectionConfig, type HeraldOptions } from './options.js'
export { TransactionRunner, toTransactionRunner, clientRunner } from './transaction-runner.js'
export type {
  DrizzleTransaction,
  KyselyTransaction,
  PrismaTransaction,
  QueryableTransaction,
  TransactionClient,
  TransactionDriver,
} from './transaction-runner.js'
export type { BackoffOptions } from './backoff.js'
export { raceWait, assertWaitOptions, deferred } from './wait.js'
export type { Deferred, WaitOptions } from './wait.js'
export { assertChannelName, MAX_CHANNEL_BYTES } from './channel-name.js'
export { DEFAULT_KIND, ENVELOPE_VERSION } from './envelope.js'
export { MAX_NOTIFY_BYTES } from './chunking.js'
export { notifyStatement, sqlLiteral } from './sql-literal.js'
export { Heartbeat } from './heartbeat.js'
export { createClient } from './create-client.js'
export { assertPlainIdentifier, migrateOnce, quoteIdentifier } from './migrate-once.js'
export type { HeartbeatOptions } from './heartbeat.js'
export { systemClock } from './clock.js'
export type { Clock } from './clock.js'
export { migrate, migrationSql } from './migrate.js'
export type { MigrateOptions, MigrationOutcome, MigrationPart } from './migrate.js'
export { DISABLE_SESSION_TIMEOUTS } from './session-timeouts.js'
