/**
 * A text value as an SQL literal, for the few statements Herald sends without parameters.
 * `E'...'` reads the same whatever `standard_conforming_strings` says: backslashes and quotes
 * are escaped, nothing else is special. Postgres text holds no NUL, so none can be in `text`.
 */
export function sqlLiteral(text: string): string {
  return `E'${text.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`
}

/**
 * `pg_notify` as one simple-protocol statement. Through PgBouncer 1.18 in transaction mode, a
 * statement with parameters is parsed, described and executed in steps that the pooler may
 * hand to different backends; postgres.js 4 then never settles it (594 of 600 in our test).
 * Without parameters there is a single step.
 */
export function notifyStatement(channel: string, payload: string): string {
  return `select pg_notify(${sqlLiteral(channel)}, ${sqlLiteral(payload)})`
}
