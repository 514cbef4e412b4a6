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
 * The `postgres` account when we run as root, else `undefined` (the server then runs as us
 * and copies need no chown). Postgres refuses to run as root, so as root the harness runs it
 * as `postgres`, creating that account (and its group) the first time if it is missing, as a
 * container running as root usually has none.
 */
export function postgresOwner(): Promise<Owner | undefined> {
  cached ??= (async () => {
    if (userInfo().uid !== 0) return undefined
    const existing = await lookup()
    if (existing) return existing
    try {
      await run('groupadd', ['--force', 'postgres'])
      await run('useradd', [
        '--gid',
        'postgres',
        '--no-create-home',
        '--shell',
        '/usr/sbin/nologin',
        'postgres',
      ])
    } catch (error) {
      // Another process may have created it in the meantime.
      const created = await lookup()
      if (created) return created
      throw new Error(
        'Postgres refuses to run as root and the `postgres` account that would run it could not be created ' +
          `(${error instanceof Error ? error.message.trim() : String(error)}): create it (useradd postgres) or run the tests as another user`,
        { cause: error },
      )
    }
    const created = await lookup()
    if (!created) throw new Error('the `postgres` account was created but `id postgres` does not find it')
    return created
  })()
  cached.catch(() => {
    cached = undefined
  })
  return cached
}

async function lookup(): Promise<Owner | undefined> {
  try {
    const [uid, gid] = await Promise.all([run('id', ['-u', 'postgres']), run('id', ['-g', 'postgres'])])
    return { uid: Number.parseInt(uid.stdout, 10), gid: Number.parseInt(gid.stdout, 10) }
  } catch {
    return undefined
  }
}
