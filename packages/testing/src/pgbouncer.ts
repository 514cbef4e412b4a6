import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import postgres from 'postgres'
import { freePort } from './free-port.js'
import type { PgServer } from './pg-server.js'
import { postgresOwner } from './postgres-owner.js'

export type PoolMode = 'transaction' | 'session'

export interface StartPgBouncerOptions {
  /** @default 'transaction' */
  mode?: PoolMode
  /** Server connections per database/user pair. @default 10 */
  poolSize?: number
}

/** The one line a test prints when it skips for want of PgBouncer. */
export const PGBOUNCER_MISSING =
  'PgBouncer is not installed: pooler tests skipped (install it with `apt-get install -y pgbouncer`)'

/** PgBouncer's executable, or undefined when it is not installed. */
export function pgBouncerBinary(): string | undefined {
  const candidates = [
    ...(process.env['PATH'] ?? '').split(delimiter).map((dir) => join(dir, 'pgbouncer')),
    '/usr/sbin/pgbouncer',
    '/usr/bin/pgbouncer',
  ]
  return candidates.find((candidate) => candidate !== 'pgbouncer' && existsSync(candidate))
}

/**
 * A real PgBouncer in front of a test server. Clients connect to {@link url} as they would to
 * the server; {@link command} runs an admin console command (PAUSE, RESUME, SHOW POOLS, ...).
 */
export class PgBouncer implements AsyncDisposable {
  readonly url: string
  readonly port: number
  readonly mode: PoolMode
  readonly #directory: string
  readonly #user: string
  #process: ChildProcess | undefined
  #output = ''

  /** @internal Use {@link startPgBouncer}. */
  constructor(url: string, port: number, mode: PoolMode, directory: string, user: string) {
    this.url = url
    this.port = port
    this.mode = mode
    this.#directory = directory
    this.#user = user
  }

  /** @internal */
  async launch(): Promise<void> {
    const binary = pgBouncerBinary()
    if (binary === undefined) throw new Error(PGBOUNCER_MISSING)
    const owner = await postgresOwner()
    const child = spawn(binary, [join(this.#directory, 'pgbouncer.ini')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // PgBouncer refuses to run as root.
      ...(owner === undefined ? {} : { uid: owner.uid, gid: owner.gid }),
    })
    this.#output = ''
    child.stdout.on('data', (data: Buffer) => (this.#output += data.toString()))
    child.stderr.on('data', (data: Buffer) => (this.#output += data.toString()))
    const failed = new Promise<never>((_, reject) => {
      child.once('error', reject)
      child.once('exit', (code, signal) =>
        reject(new Error(`pgbouncer exited (${code ?? signal}) at start:\n${this.#output}`)),
      )
    })
    failed.catch(() => {})
    this.#process = child
    const deadline = Date.now() + 10_000
    for (;;) {
      const ready = await Promise.race([this.#answers(), failed])
      if (ready) return
      if (Date.now() > deadline) throw new Error(`pgbouncer did not start within 10 s:\n${this.#output}`)
      await sleep(50)
    }
  }

  async #answers(): Promise<boolean> {
    try {
      await this.command('SHOW VERSION')
      return true
    } catch {
      return false
    }
  }

  /** Runs one admin console command and returns its rows. */
  async command(text: string): Promise<Record<string, unknown>[]> {
    const adminUrl = new URL(this.url)
    adminUrl.pathname = '/pgbouncer'
    const admin = postgres(adminUrl.toString(), {
      max: 1,
      fetch_types: false,
      prepare: false,
      idle_timeout: 1,
      connect_timeout: 2,
      onnotice: () => {},
    })
    try {
      return [...(await admin.unsafe(text).simple())] as Record<string, unknown>[]
    } finally {
      await admin.end({ timeout: 1 })
    }
  }

  /** Stops PgBouncer (every client connection drops) and starts it again on the same port. */
  async restart(options: { downMs?: number } = {}): Promise<void> {
    await this.#stop()
    if (options.downMs) await sleep(options.downMs)
    await this.launch()
  }

  async #stop(): Promise<void> {
    const child = this.#process
    this.#process = undefined
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    // SIGINT: immediate shutdown, as a crash or a redeploy of the pooler looks to clients.
    child.kill('SIGINT')
    await Promise.race([exited, sleep(5_000)])
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }

  async close(): Promise<void> {
    await this.#stop()
    await rm(this.#directory, { recursive: true, force: true })
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close()
  }

  /** @internal For messages: what PgBouncer printed. */
  get log(): string {
    return this.#output
  }

  /** @internal */
  get user(): string {
    return this.#user
  }
}

/**
 * Starts PgBouncer in front of `server` (an embedded test server or DATABASE_URL's).
 * @throws when PgBouncer is not installed ({@link PGBOUNCER_MISSING}); check {@link pgBouncerBinary} first.
 */
export async function startPgBouncer(
  server: PgServer,
  options: StartPgBouncerOptions = {},
): Promise<PgBouncer> {
  const target = new URL(server.url)
  const user = decodeURIComponent(target.username || 'postgres')
  const password = decodeURIComponent(target.password)
  const mode = options.mode ?? 'transaction'
  const directory = await mkdtemp(join(tmpdir(), 'herald-pgbouncer-'))
  // Run as the postgres account when we are root: it must read its configuration.
  await chmod(directory, 0o755)
  const port = await freePort()
  const quote = (value: string) => `"${value.replaceAll('"', '""')}"`
  await writeFile(join(directory, 'userlist.txt'), `${quote(user)} ${quote(password)}\n`, { mode: 0o644 })
  await writeFile(
    join(directory, 'pgbouncer.ini'),
    [
      '[databases]',
      `* = host=${target.hostname} port=${target.port || 5432}`,
      '[pgbouncer]',
      'listen_addr = 127.0.0.1',
      `listen_port = ${port}`,
      'unix_socket_dir =',
      'auth_type = trust',
      `auth_file = ${join(directory, 'userlist.txt')}`,
      `admin_users = ${user}`,
      `pool_mode = ${mode}`,
      `default_pool_size = ${options.poolSize ?? 10}`,
      'max_client_conn = 1000',
      'ignore_startup_parameters = extra_float_digits,options',
      'server_reset_query = DISCARD ALL',
      'log_connections = 0',
      'log_disconnections = 0',
      '',
    ].join('\n'),
    { mode: 0o644 },
  )
  const url = new URL(server.url)
  url.port = String(port)
  url.hostname = '127.0.0.1'
  const bouncer = new PgBouncer(url.toString(), port, mode, directory, user)
  try {
    await bouncer.launch()
  } catch (error) {
    await bouncer.close()
    throw error
  }
  return bouncer
}
