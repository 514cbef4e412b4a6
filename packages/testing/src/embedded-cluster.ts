import { appendFile, chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { copyDir } from './copy-dir.js'
import { dataDirTemplate } from './data-dir-template.js'
import { freePort } from './free-port.js'
import { orphanReaper } from './orphan-reaper.js'
import { PgLog } from './pg-log.js'
import { postgresBinaries } from './postgres-binaries.js'
import { postgresOwner, type Owner } from './postgres-owner.js'
import { describeExit, runServerProgram, type ServerProgram } from './server-program.js'

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
  readonly #postgres: string
  readonly #owner: Owner | undefined
  readonly #flags: readonly string[]
  readonly #log: PgLog
  readonly #standby: boolean
  #postmaster: ServerProgram | undefined
  #queue: Promise<unknown> = Promise.resolve()

  private constructor(
    postgres: string,
    owner: Owner | undefined,
    workDir: string,
    dataDir: string,
    port: number,
    options: EmbeddedClusterOptions,
  ) {
    this.port = port
    this.dataDir = dataDir
    this.#workDir = workDir
    this.#postgres = postgres
    this.#owner = owner
    this.#flags = ['-D', dataDir, '-p', String(port), ...BASE_FLAGS, ...options.postgresFlags]
    this.#log = new PgLog(`pg ${options.label}:${port}`)
    this.#standby = options.standby === true
  }

  /** Copies the template and starts a postmaster on a free port. */
  static async create(options: EmbeddedClusterOptions): Promise<EmbeddedCluster> {
    const template = options.source ?? (await dataDirTemplate())
    const owner = await postgresOwner()
    const { postgres } = await postgresBinaries(owner)
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
        const cluster = new EmbeddedCluster(postgres, owner, workDir, dataDir, await freePort(), options)
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
    return this.#postmaster?.child.pid
  }

  /** Starts the postmaster; a no-op while it runs. */
  start(): Promise<void> {
    return this.#serial(async () => {
      if (this.#postmaster) return
      this.#log.clear()
      // A standby says "ready to accept read-only connections" instead.
      const ready = this.#log.waitFor(
        this.#standby ? 'ready to accept read-only connections' : 'ready to accept connections',
      )
      const program = runServerProgram(this.#postgres, this.#flags, this.#owner, this.#log)
      let timer: NodeJS.Timeout | undefined
      try {
        await Promise.race([
          ready,
          program.exited.then((exit) => {
            throw new Error(describeExit(this.#postgres, exit))
          }),
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () => reject(new Error(`not ready after ${START_TIMEOUT_MS} ms`)),
              START_TIMEOUT_MS,
            )
          }),
        ])
      } catch (error) {
        program.child.kill('SIGQUIT')
        await program.exited
        const message = `embedded Postgres did not start on port ${this.port}: ${(error as Error).message}`
        throw new Error(`${message}\n${this.#log.tail()}`, { cause: error })
      } finally {
        clearTimeout(timer)
      }
      const pid = program.child.pid
      if (pid === undefined) throw new Error('embedded Postgres started but has no pid')
      this.#postmaster = program
      orphanReaper.track('postmaster', pid)
    })
  }

  /** Fast shutdown; resolves once the postmaster has exited (also when it died on its own). */
  stop(): Promise<void> {
    return this.#serial(async () => {
      const postmaster = this.#postmaster
      if (!postmaster) return
      const { child } = postmaster
      if (child.exitCode === null && child.signalCode === null) {
        const escalate = setTimeout(() => child.kill('SIGQUIT'), STOP_ESCALATE_MS)
        child.kill('SIGINT')
        try {
          await postmaster.exited
        } finally {
          clearTimeout(escalate)
        }
      }
      this.#postmaster = undefined
      if (child.pid !== undefined) orphanReaper.release('postmaster', child.pid)
    })
  }

  /** Stops the server and deletes its data directory. */
  async remove(): Promise<void> {
    await this.stop()
    await this.#serial(() => rm(this.#workDir, { recursive: true, force: true }))
    orphanReaper.release('dir', this.#workDir)
  }

  // start/stop/remove must not interleave: a stop() racing a start() would
  // signal a postmaster that is still half-way up.
  #serial<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task, task)
    this.#queue = run.catch(() => {})
    return run
  }
}
