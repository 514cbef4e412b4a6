import { spawn } from 'node:child_process'
import { EventEmitter } from 'node:events'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { describe, expect, it } from 'vitest'
import { once, startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'

const here = dirname(fileURLToPath(import.meta.url))

/** Pids of live (non-zombie) processes whose command line mentions `text`. */
function processesMentioning(text: string): number[] {
  const pids: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      if (/^\d+ \(.*\) Z/.test(stat)) continue
      if (readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) pids.push(Number(entry))
    } catch {
      // Exited while we looked.
    }
  }
  return pids
}

async function dataDirectory(server: PgServer): Promise<string> {
  const [row] = await server.sql<{ dir: string }[]>`select current_setting('data_directory') as dir`
  if (!row) throw new Error('no data_directory')
  return row.dir
}

describe('startPostgres()', () => {
  it('shares the global server unless faults are asked for', async () => {
    expect(process.env['DATABASE_URL']).toMatch(/^postgres:\/\//)
    await using server = await startPostgres()
    expect(server.embedded).toBe(false)
    expect(server.url).toBe(process.env['DATABASE_URL'])
    const [row] = await server.sql<{ answer: number }[]>`select 6 * 7 as answer`
    expect(row?.answer).toBe(42)
    await expect(server.pause(1)).rejects.toThrow(/DATABASE_URL/)
    await expect(server.restart()).rejects.toThrow(/faults: true/)
    await expect(server.terminate()).rejects.toThrow(/shared/)
  })

  it('starts a fast, UTF-8, loopback-only server of its own for faults', async () => {
    await using server = await startPostgres({ faults: true, label: 'settings' })
    expect(server.embedded).toBe(true)
    expect(server.url).toBe(`postgres://postgres:password@127.0.0.1:${server.port}/postgres`)
    const [row] = await server.sql`
      select current_setting('fsync') as fsync,
             current_setting('synchronous_commit') as synchronous_commit,
             current_setting('full_page_writes') as full_page_writes,
             current_setting('max_connections') as max_connections,
             current_setting('listen_addresses') as listen_addresses,
             current_setting('server_encoding') as encoding,
             current_user as user`
    expect(row).toEqual({
      fsync: 'off',
      synchronous_commit: 'off',
      full_page_writes: 'off',
      max_connections: '300',
      listen_addresses: '127.0.0.1',
      encoding: 'UTF8',
      user: 'postgres',
    })
    // The copy of the template: Postgres insists on owning a 0700 directory.
    const dir = statSync(await dataDirectory(server))
    expect(dir.mode & 0o777).toBe(0o700)
    expect(dir.uid).toBe(statSync(join(await dataDirectory(server), 'PG_VERSION')).uid)
    if (process.getuid?.() === 0) expect(dir.uid).not.toBe(0)
  })

  it('applies postgresFlags after its own', async () => {
    await using server = await startPostgres({ postgresFlags: ['-c', 'max_connections=50'] })
    expect(server.embedded).toBe(true)
    const [row] = await server.sql`select current_setting('max_connections') as value`
    expect(row?.['value']).toBe('50')
  })

  it('fails with the server log when Postgres refuses to start, leaving no directory', async () => {
    const before = new Set(readdirSync(tmpdir()).filter((name) => name.startsWith('herald-pg-bad-flag-')))
    await expect(
      startPostgres({ label: 'bad-flag', postgresFlags: ['-c', 'no_such_setting=1'] }),
    ).rejects.toThrow(
      /did not start on port \d+[\s\S]*unrecognized configuration parameter "no_such_setting"/,
    )
    expect(
      readdirSync(tmpdir()).filter((name) => name.startsWith('herald-pg-bad-flag-') && !before.has(name)),
    ).toEqual([])
  })
})

describe('PgServer fault injection', () => {
  it('lists and terminates backends, leaving out the admin client', async () => {
    await using server = await startPostgres({ faults: true, label: 'terminate' })
    const client = server.connect({ connection: { application_name: 'victim' } })
    const [before] = await client<{ pid: number }[]>`select pg_backend_pid() as pid`
    expect(await server.backendPids()).toEqual([before?.pid])
    expect(await server.backendPids({ applicationName: 'victim' })).toEqual([before?.pid])
    expect(await server.backendPids({ applicationName: 'nobody' })).toEqual([])

    // postgres.js sends a query when it is awaited; execute() sends it now.
    // catch() now, or the rejection counts as unhandled until we await it.
    const sleeping = client`select pg_sleep(30)`.execute().catch((error: unknown) => error)
    await waitFor(async () => {
      const [row] = await server.sql`select state from pg_stat_activity where pid = ${before?.pid ?? 0}`
      return row?.['state'] === 'active'
    })
    expect(await server.terminate({ applicationName: 'victim' })).toBe(1)
    // postgres.js reports either the server's FATAL or the closed socket,
    // whichever it reads first.
    expect(((await sleeping) as { code?: string }).code).toMatch(/^(57P01|CONNECTION_CLOSED)$/)
    // terminate() waits for the backend to exit, so it is gone already.
    expect(await server.backendPids()).toEqual([])

    const [after] = await client<{ pid: number }[]>`select pg_backend_pid() as pid`
    expect(after?.pid).not.toBe(before?.pid)
    expect(await server.terminate([after?.pid ?? 0, 999_999])).toBe(1)
    await client`select 1`
    expect(await server.terminate()).toBe(1)
    // The admin client was spared every time.
    await server.sql`select 1`
  })

  it("terminates as the admin client's very first query", async () => {
    // postgres.js learns array type oids after connecting: a first query with
    // an array parameter used to fail.
    await using server = await startPostgres({ faults: true, label: 'first-query' })
    const client = server.connect()
    const [row] = await client<{ pid: number }[]>`select pg_backend_pid() as pid`
    expect(await server.terminate([row?.pid ?? 0])).toBe(1)
  })

  it('pauses a backend so that it answers nothing until resumed', async () => {
    await using server = await startPostgres({ faults: true, label: 'pause' })
    const client = server.connect({ max: 1 })
    const [row] = await client<{ pid: number }[]>`select pg_backend_pid() as pid`
    const pid = row?.pid ?? 0
    await server.pause(pid)
    // The kernel stops it asynchronously; 'T' is the stopped state.
    await waitFor(() => /^\d+ \(postgres\) T/.test(readFileSync(`/proc/${pid}/stat`, 'utf8')))

    const answered = client`select 1 as one`.then(() => 'answered')
    expect(await Promise.race([answered, sleep(300, 'silent')])).toBe('silent')
    await server.resume(pid)
    expect(await answered).toBe('answered')
    await expect(server.pause(999_999)).rejects.toThrow(/not a backend/)
  })

  it('restarts on the same port; clients reconnect', async () => {
    await using server = await startPostgres({ faults: true, label: 'restart' })
    const client = server.connect()
    await client`create table ${client(uniqueName('kept'))} (id int)`
    const postmaster = server.postmasterPid
    await server.restart({ downMs: 50 })
    expect(server.postmasterPid).not.toBe(postmaster)
    expect(processesMentioning(`-p ${server.port}`)).not.toContain(postmaster)
    // The in-flight-free clients reconnect on their next query.
    await client`select 1`
    await server.sql`select 1`

    await server.stop()
    expect(() => server.postmasterPid).toThrow(/stopped/)
    await expect(client`select 1`).rejects.toMatchObject({ code: 'ECONNREFUSED' })
    await server.start()
    await client`select 1`
  })

  it('close() resumes paused backends, stops the server and removes its data', async () => {
    const server = await startPostgres({ faults: true, label: 'close' })
    const dir = await dataDirectory(server)
    const client = server.connect()
    const [row] = await client<{ pid: number }[]>`select pg_backend_pid() as pid`
    await server.pause(row?.pid ?? 0)
    expect(processesMentioning(dir)).toContain(server.postmasterPid)

    await server.close()
    await server.close()
    expect(existsSync(dir)).toBe(false)
    expect(processesMentioning(dir)).toEqual([])
    expect(processesMentioning(`-p ${server.port}`)).toEqual([])
    expect(() => server.connect()).toThrow(/closed/)
  })

  it('keeps the exit code of a process whose event loop drains', async () => {
    const child = spawn(
      process.execPath,
      ['--conditions=@herald/source', '--import', 'tsx', join(here, 'fixtures/exit-code.ts')],
      { stdio: 'inherit' },
    )
    expect(await once(child, 'exit', { timeoutMs: 30_000 })).toBe(3)
  })

  it.each([
    ['SIGKILL', []],
    ['SIGKILL', ['--pause']],
    ['SIGTERM', ['--pause']],
  ])('leaves nothing behind when its process gets %s (%j)', async (signal, args) => {
    const child = spawn(
      process.execPath,
      ['--conditions=@herald/source', '--import', 'tsx', join(here, 'fixtures/orphaned-server.ts'), ...args],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    )
    const line = await once<Buffer>(child.stdout, 'data', { timeoutMs: 30_000 })
    const { postmasterPid, dataDir } = JSON.parse(line.toString()) as {
      postmasterPid: number
      dataDir: string
    }
    expect(processesMentioning(dataDir)).toContain(postmasterPid)

    child.kill(signal as NodeJS.Signals)
    await waitFor(() => processesMentioning(dataDir).length === 0 && !existsSync(dataDir), {
      timeoutMs: 20_000,
      message: `postgres of a ${signal}ed process still alive or its data still there`,
    })
  })

  it('leaves nothing behind when its process is killed during initdb', async () => {
    // No shared template: the child runs initdb itself.
    const child = spawn(
      process.execPath,
      ['--conditions=@herald/source', '--import', 'tsx', join(here, 'fixtures/orphaned-server.ts')],
      { stdio: 'ignore', env: { ...process.env, HERALD_PG_TEMPLATE: '' } },
    )
    const pgdata = await waitFor(
      () => {
        for (const pid of processesMentioning('--pgdata=')) {
          const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
          if (stat.split(') ')[1]?.split(' ')[1] !== String(child.pid)) continue
          return /--pgdata=([^\0]+)/.exec(readFileSync(`/proc/${pid}/cmdline`, 'utf8'))?.[1]
        }
        return undefined
      },
      { timeoutMs: 20_000, intervalMs: 5, message: 'initdb never started' },
    )
    child.kill('SIGKILL')
    await waitFor(() => processesMentioning(pgdata).length === 0 && !existsSync(dirname(pgdata)), {
      timeoutMs: 20_000,
      message: 'initdb of a killed process still running or its directory still there',
    })
  })
})

describe('helpers', () => {
  it('waitFor() returns the first truthy value and reports the last error', async () => {
    let calls = 0
    expect(await waitFor(() => (++calls >= 3 ? calls : 0), { intervalMs: 1 })).toBe(3)
    await expect(
      waitFor(
        () => {
          throw new Error('still broken')
        },
        { timeoutMs: 50, message: 'never' },
      ),
    ).rejects.toThrow(/^never after 50 ms; last error: still broken$/)
    await expect(waitFor(() => new Promise(() => {}), { timeoutMs: 50 })).rejects.toThrow(/after 50 ms/)
  })

  it('uniqueName() makes short unquoted identifiers', () => {
    const names = new Set(Array.from({ length: 1000 }, () => uniqueName('Cache Invalidation-Channel!')))
    expect(names.size).toBe(1000)
    for (const name of names) expect(name).toMatch(/^cache_invalidation_chann_[a-z0-9]+$/)
    for (const name of names) expect(name.length).toBeLessThan(40)
    expect(uniqueName('9lives')).toMatch(/^n9lives_/)
  })

  it('once() resolves with the first payload and times out', async () => {
    const emitter = new EventEmitter()
    const first = once<{ n: number }>(emitter, 'tick')
    emitter.emit('tick', { n: 1 })
    emitter.emit('tick', { n: 2 })
    expect(await first).toEqual({ n: 1 })
    await expect(once(emitter, 'never', { timeoutMs: 20 })).rejects.toThrow(/no 'never' event within 20 ms/)
    expect(emitter.listenerCount('never')).toBe(0)
  })
})
