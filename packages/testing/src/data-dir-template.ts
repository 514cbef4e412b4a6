import { existsSync } from 'node:fs'
import { chmod, mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadEmbeddedPostgres } from './load-embedded-postgres.js'
import { orphanReaper } from './orphan-reaper.js'
import { PG_PASSWORD, PG_USER, TEMPLATE_ENV } from './pg-constants.js'
import { PgLog } from './pg-log.js'

let cached: Promise<string> | undefined

/**
 * A data directory that initdb filled and no server ever started, so copying it
 * is a valid fresh cluster. initdb is the slow part of starting a server, so it
 * runs once per process (or once per test run, when the global setup names one
 * in HERALD_PG_TEMPLATE), and each server starts from a copy.
 */
export function dataDirTemplate(): Promise<string> {
  const shared = process.env[TEMPLATE_ENV]
  if (shared && existsSync(join(shared, 'PG_VERSION'))) return Promise.resolve(shared)
  cached ??= initdb()
  cached.catch(() => {
    cached = undefined
  })
  return cached
}

/** Removes this process's template (the reaper removes it at exit otherwise). */
export async function removeDataDirTemplate(): Promise<void> {
  const pending = cached
  cached = undefined
  if (!pending) return
  const dir = await pending.catch(() => undefined)
  if (!dir) return
  const parent = join(dir, '..')
  await rm(parent, { recursive: true, force: true })
  orphanReaper.release('dir', parent)
}

async function initdb(): Promise<string> {
  const parent = await mkdtemp(join(tmpdir(), 'herald-pg-template-'))
  orphanReaper.track('dir', parent)
  const dir = join(parent, 'data')
  const log = new PgLog('pg template')
  try {
    // mkdtemp makes a 0700 directory that `postgres` (we run as root) could
    // not enter; the account may not even exist before this first initdb.
    await chmod(parent, 0o711)
    const EmbeddedPostgres = await loadEmbeddedPostgres()
    const pg = new EmbeddedPostgres({
      databaseDir: dir,
      user: PG_USER,
      password: PG_PASSWORD,
      authMethod: 'password',
      createPostgresUser: true,
      persistent: true,
      // embedded-postgres only picks a UTF-8 locale spelled exactly
      // `C.UTF-8`/`en_US.UTF-8`; Debian's `C.utf8` makes it fall back to `C`,
      // and initdb would then default to SQL_ASCII. Force UTF8; C collation is
      // also the fastest. Checksums (on by default since 18) and syncing
      // only cost time on a throwaway cluster.
      initdbFlags: ['--encoding=UTF8', '--locale=C', '--no-data-checksums', '--no-sync', '--no-instructions'],
      onLog: log.write,
      onError: log.write,
    })
    await pg.initialise()
    return dir
  } catch (error) {
    await rm(parent, { recursive: true, force: true })
    orphanReaper.release('dir', parent)
    throw new Error(
      `initdb failed: ${error instanceof Error ? error.message : String(error)}\n${log.tail()}`,
      {
        cause: error,
      },
    )
  }
}
