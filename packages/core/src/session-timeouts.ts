/**
 * Herald's pinned sessions (the lock session; the listener to come) are idle by design and live as long
 * as the process: an `idle_session_timeout` (PG 14+) set for the role or database would end them
 * every few seconds, and `statement_timeout` or `transaction_timeout` tuned for the app's queries
 * could cancel theirs. This select-list expression turns those off for the session alone, for
 * each setting the server knows (older servers lack some). Runs in the session's first query.
 */
export const DISABLE_SESSION_TIMEOUTS = `(select count(pg_catalog.set_config(name, '0', false)) from pg_catalog.pg_settings
  where name in ('idle_session_timeout', 'idle_in_transaction_session_timeout', 'statement_timeout', 'transaction_timeout'))`
