import { existsSync } from 'node:fs'
import { chmod, chown, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { orphanReaper } from './orphan-reaper.js'
import { PG_PASSWORD, PG_USER, TEMPLATE_ENV } from './pg-constants.js'
import { PgLog } from './pg-log.js'
import { postgresBinaries } from './postgres-binaries.js'
import { postgresOwner } from './postgres-owner.js'
import { describeExit, runServerProgram } from './server-program.js'

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
    const owner = await postgresOwner()
    const binaries = await postgresBinaries(owner)
    // mkdtemp makes a 0700 directory that `postgres` (when we run as root) could not enter,
    // nor create the data directory in: make it and give it away.
    await chmod(parent, 0o711)
    await mkdir(dir, { mode: 0o700 })
    const passwordFile = join(parent, 'password')
    await writeFile(passwordFile, `${PG_PASSWORD}\n`, { mode: 0o600 })
    if (owner) await Promise.all([dir, passwordFile].map((path) => chown(path, owner.uid, owner.gid)))
    const program = runServerProgram(
      binaries.initdb,
      [
        `--pgdata=${dir}`,
        '--auth=password',
        `--username=${PG_USER}`,
        `--pwfile=${passwordFile}`,
        // UTF8 whatever the machine's locale; C collation is also the fastest. Checksums (on
        // by default since 18, an option only since then) and syncing only cost time on a
        // throwaway cluster.
        '--encoding=UTF8',
        '--locale=C',
        ...(binaries.major >= 18 ? ['--no-data-checksums'] : []),
        '--no-sync',
        '--no-instructions',
      ],
      owner,
      log,
    )
    const exit = await program.exited
    await rm(passwordFile, { force: true })
    if (exit.error || exit.code !== 0) throw new Error(describeExit(binaries.initdb, exit))
    return dir
  } catch (error) {
    await rm(parent, { recursive: true, force: true })
    orphanReaper.release('dir', parent)
    const reason = error instanceof Error ? error.message : String(error)
    throw new Error(`initdb failed: ${reason}\n${log.tail()}`, { cause: error })
  }
}
