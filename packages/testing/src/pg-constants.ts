/** Superuser baked into every data directory by the template's initdb. */
export const PG_USER = 'postgres'
/** Its password (loopback only; `password` auth is the cheapest handshake). */
export const PG_PASSWORD = 'password'
/** `application_name` of every harness admin client, so counts can skip them. */
export const ADMIN_APPLICATION_NAME = 'herald-testing-admin'
/**
 * Env var naming a ready data-directory template. The global setup sets it so
 * every worker copies one initdb instead of running its own.
 */
export const TEMPLATE_ENV = 'HERALD_PG_TEMPLATE'
/** Env var that turns the servers' log output on (`1`), prefixed by label. */
export const LOG_ENV = 'HERALD_PG_LOG'
