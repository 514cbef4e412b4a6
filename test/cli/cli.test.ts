import { startPostgres, uniqueName, waitFor, type PgServer } from '@herald/testing'
import type postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readyCache } from '../support/caches.js'
import { collect, startedHerald } from '../support/heralds.js'
import { cli, startCli } from './run-cli.js'

let server: PgServer
let sql: postgres.Sql
let db: Record<string, string>

beforeAll(async () => {
  server = await startPostgres({ label: 'cli' })
  sql = server.connect({ max: 2 })
  db = { DATABASE_URL: server.url }
})
afterAll(async () => {
  await server.close()
})

const COMMANDS = [
  ['migrate'],
  ['sql'],
  ['trigger', 'add'],
  ['trigger', 'remove'],
  ['trigger', 'list'],
  ['listen'],
  ['notify'],
  ['doctor'],
  ['stats'],
]

describe('herald: usage', () => {
  it('prints help for every command, exit 0; the list when run bare, exit 2', async () => {
    const main = await cli(['--help'])
    expect(main.code).toBe(0)
    for (const command of COMMANDS) expect(main.stdout).toContain(command.join(' '))
    const results = await Promise.all(COMMANDS.map((command) => cli([...command, '--help'])))
    results.forEach((result, index) => {
      expect(result.code, COMMANDS[index]!.join(' ')).toBe(0)
      expect(result.stdout).toMatch(new RegExp(`^Usage: herald ${COMMANDS[index]!.join(' ')}`))
      expect(result.stdout).toMatch(/Exit: 0/)
    })
    const bare = await cli([])
    expect(bare.code).toBe(2)
    expect(bare.stderr).toContain('Usage: herald <command>')
    expect((await cli(['trigger', '--help'])).stdout).toContain('trigger remove')
    expect((await cli(['--version'])).stdout).toMatch(/^\d+\.\d+\.\d+\n$/)
  })

  it('exits 2 on usage errors, with a pointer to --help, before touching any database', async () => {
    const cases: [string[], RegExp][] = [
      [['frobnicate'], /unknown command "frobnicate"/],
      [['trigger', 'frob'], /unknown command "trigger frob"/],
      [['migrate', '--nope'], /Unknown option '--nope'/],
      [['notify', 'orders'], /missing <json>/],
      [['notify', 'orders', '{not json'], /<json> is not JSON/],
      [['notify', 'bad channel', '{}'], /channel "bad channel" may hold only/],
      [['notify', 'orders', '{}', '--kind', 'no spaces'], /--kind must be/],
      [['listen'], /missing <channel>/],
      [['listen', 'a', 'b'], /unexpected argument "b"/],
      [['listen', 'orders', '--count', '0'], /--count must be a whole number >= 1/],
      [['trigger', 'add', '--table', 't', '--cache', 'c'], /--key is required/],
      [['trigger', 'add', '--table', 't', '--key', 'id'], /--cache is required/],
      [['trigger', 'remove', '--cache', 'c'], /--table is required/],
      [['sql', '--schema', 'no-dashes'], /schema must be a plain identifier/],
    ]
    const results = await Promise.all(cases.map(([args]) => cli(args, db)))
    results.forEach((result, index) => {
      const [args, pattern] = cases[index]!
      expect(result.code, args.join(' ')).toBe(2)
      expect(result.stderr, args.join(' ')).toMatch(pattern)
      expect(result.stderr).toMatch(/--help/)
    })
    // No DATABASE_URL, no --url, no PG* variables.
    const nowhere = await cli(['migrate'])
    expect(nowhere.code).toBe(2)
    expect(nowhere.stderr).toContain('no database: give --url')
  })

  it('exits 1 when the server cannot be reached', async () => {
    const result = await cli(['migrate', '--url', 'postgres://postgres:password@127.0.0.1:1/postgres'])
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/^herald migrate: .*ECONNREFUSED/m)
  })
})

describe('herald migrate and sql', () => {
  it('migrates, and a second run finds every part current', async () => {
    const schema = uniqueName('herald')
    const first = await cli(['migrate', '--schema', schema], db)
    expect(first.code).toBe(0)
    expect(first.stdout).toMatch(/^lru-log\s+v2\s+applied$/m)
    expect(first.stdout).toMatch(/^lock-tokens\s+v1\s+applied$/m)
    expect(first.stdout).toMatch(/^config\s+v1\s+applied$/m)
    const second = await cli(['migrate', '--schema', schema, '--url', server.url])
    expect(second.code).toBe(0)
    expect(second.stdout).toMatch(/^lru-log\s+v2\s+current$/m)
    expect(second.stdout).toMatch(/^lock-tokens\s+v1\s+current$/m)
    const tables = await sql<{ table: string }[]>`
      select table_name as table from information_schema.tables where table_schema = ${schema} order by 1`
    expect(tables.map((row) => row.table)).toEqual([
      'cache_invalidations',
      'cache_invalidations_pruned',
      'config_heads',
      'config_history',
      'config_values',
      'lock_tokens',
      'migrations',
      'notify_outbox',
    ])
  })

  it('is safe when many instances migrate at once', async () => {
    const schema = uniqueName('herald')
    const results = await Promise.all(
      Array.from({ length: 4 }, () => cli(['migrate', '--schema', schema], db)),
    )
    expect(results.map((result) => result.code)).toEqual([0, 0, 0, 0])
    const rows = await sql<{ part: string; version: number }[]>`
      select part, version from ${sql(schema)}.migrations order by part`
    expect(rows).toEqual([
      { part: 'config', version: 1 },
      { part: 'lock-tokens', version: 1 },
      { part: 'lru-log', version: 2 },
    ])
  })

  it('sql prints the DDL, which creates the tables and which migrate then finds current', async () => {
    const schema = uniqueName('herald')
    const result = await cli(['sql', '--schema', schema])
    expect(result.code).toBe(0)
    expect(result.stdout).toContain(`create table if not exists "${schema}".cache_invalidations`)
    expect(result.stdout).toContain(`create table if not exists "${schema}".lock_tokens`)
    expect(result.stdout).toContain(`create table if not exists "${schema}".migrations`)
    await sql.begin((tx) => tx.unsafe(result.stdout))
    const again = await cli(['migrate', '--schema', schema], db)
    expect(again.stdout).not.toContain('applied')
    expect(again.stdout).toMatch(/^lru-log\s+v2\s+current$/m)
  })
})

describe('herald trigger', () => {
  it('adds, lists and removes an invalidation trigger that evicts on every write', async () => {
    const table = uniqueName('users')
    const cache = uniqueName('users')
    const channel = uniqueName('inv')
    await sql.unsafe(`create table ${table} (id int primary key, org int)`)
    await sql.unsafe(`insert into ${table} select i, i % 3 from generate_series(1, 100) as i`)
    const add = await cli(
      [
        'trigger',
        'add',
        '--table',
        table,
        '--cache',
        cache,
        '--key',
        "'user:' || id",
        '--tag',
        "'org:' || org",
      ].concat(['--channel', channel]),
      db,
    )
    expect(add.code, add.stderr).toBe(0)
    expect(add.stdout).toContain(`installed "public"."herald_inv_${table}`)

    await using herald = await startedHerald({ connection: server.url })
    const users = await readyCache<string>(herald, { name: cache, channel })
    users.set('user:7', 'stale')
    users.set('report', 'stale', { tags: ['org:2'] })
    await sql.unsafe(`update ${table} set org = 2 where id = 7`)
    await waitFor(() => users.get('user:7') === undefined && users.get('report') === undefined)

    const list = await cli(['trigger', 'list', '--table', table, '--json'], db)
    expect(list.code).toBe(0)
    expect(JSON.parse(list.stdout)).toMatchObject([
      { schema: 'public', table, cache, channel, key: ["'user:' || id"], tags: ["'org:' || org"] },
    ])
    const text = await cli(['trigger', 'list', '--table', table], db)
    expect(text.stdout).toMatch(
      new RegExp(`^public\\.${table}\\s+${cache}\\s+${channel}\\s+-\\s+'user:' \\|\\| id`, 'm'),
    )

    const remove = await cli(['trigger', 'remove', '--table', table, '--cache', cache], db)
    expect(remove.code).toBe(0)
    expect(remove.stdout).toContain('removed')
    const again = await cli(['trigger', 'remove', '--table', table, '--cache', cache], db)
    expect(again.code).toBe(0)
    expect(again.stderr).toContain('nothing to do')
    const empty = await cli(['trigger', 'list', '--table', table, '--json'], db)
    expect(JSON.parse(empty.stdout)).toEqual([])
  })

  it('refuses a bad key expression with exit 2 and installs nothing; --print needs no database', async () => {
    const table = uniqueName('users')
    await sql.unsafe(`create table ${table} (id int primary key)`)
    const bad = await cli(['trigger', 'add', '--table', table, '--cache', 'c', '--key', "'user:' || idd"], db)
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('column "idd" does not exist')
    const list = await cli(['trigger', 'list', '--table', table, '--json'], db)
    expect(JSON.parse(list.stdout)).toEqual([])

    const printed = await cli([
      'trigger',
      'add',
      '--table',
      table,
      '--cache',
      'c',
      '--key',
      'id',
      '--durable',
      '--print',
    ])
    expect(printed.code).toBe(0)
    expect(printed.stdout).toContain('create or replace function "public"."herald_inv_')
    expect(printed.stdout).toContain(`referencing old table as herald_old new table as herald_new`)
    expect(printed.stdout).toContain('"herald".cache_invalidations')
  })
})

describe('herald notify and listen', () => {
  it('notify publishes an envelope from "cli" that a Herald subscriber receives, chunked when large', async () => {
    await using herald = await startedHerald({ connection: server.url })
    const channel = uniqueName('orders')
    const received = await collect(herald, channel)
    const small = await cli(['notify', channel, '{"id":42}'], db)
    expect(small.code, small.stderr).toBe(0)
    const big = { text: 'é🎉"\n'.repeat(5_000) }
    const large = await cli(['notify', channel, JSON.stringify(big), '--kind', 'order.large'], db)
    expect(large.code, large.stderr).toBe(0)
    expect(large.stdout).toMatch(/in [2-9] NOTIFYs/)
    await received.count(2)
    expect(received.messages.map(({ payload, meta }) => [payload, meta.origin, meta.kind])).toEqual([
      [{ id: 42 }, 'cli', 'message'],
      [big, 'cli', 'order.large'],
    ])
    expect(herald.stats().invalid).toBe(0)
  })

  it('notify --kind invalidate evicts from a cache', async () => {
    await using herald = await startedHerald({ connection: server.url })
    const name = uniqueName('users')
    const cache = await readyCache<string>(herald, { name })
    cache.set('user:1', 'stale')
    cache.set('user:2', 'fresh')
    const message = JSON.stringify({ c: name, k: ['user:1'] })
    const result = await cli(['notify', 'cache_invalidation', message, '--kind', 'invalidate'], db)
    expect(result.code).toBe(0)
    await waitFor(() => cache.get('user:1') === undefined)
    expect(cache.get('user:2')).toBe('fresh')
  })

  it('listen --json prints messages published by a Herald, reassembled, then exits after --count', async () => {
    const channel = uniqueName('events')
    const listening = startCli(['listen', channel, '--json', '--count', '3'], db)
    await listening.waitForOutput(`listening on ${channel}`)
    await using herald = await startedHerald({ connection: server.url })
    const large = { blob: 'ü'.repeat(20_000) }
    await herald.publish(channel, { n: 1 })
    await herald.publish(channel, large, { kind: 'blob' })
    // Not an envelope: shown as such, and it does not count.
    await sql`select pg_notify(${channel}, 'plain text')`
    await herald.publish(channel, { n: 3 })
    const result = await listening.exited
    expect(result.code, result.stderr).toBe(0)
    const lines = result.stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(lines).toMatchObject([
      { channel, origin: herald.origin, kind: 'message', body: { n: 1 } },
      { channel, origin: herald.origin, kind: 'blob', body: large },
      { channel, invalid: expect.stringContaining('not JSON') as unknown, excerpt: 'plain text' },
      { channel, origin: herald.origin, kind: 'message', body: { n: 3 } },
    ])
  })

  it('listen pretty-prints until Ctrl-C, then exits 0', async () => {
    const channel = uniqueName('events')
    const listening = startCli(['listen', channel], db)
    await listening.waitForOutput(`listening on ${channel}`)
    await using herald = await startedHerald({ connection: server.url })
    await herald.publish(channel, { c: 'users', k: ['user:1', 'user:2'] }, { kind: 'invalidate' })
    await listening.waitForOutput('"user:2"', 'stdout')
    listening.child.kill('SIGINT')
    const result = await listening.exited
    expect(result.code).toBe(0)
    expect(result.stdout).toMatch(
      new RegExp(
        `^\\d\\d:\\d\\d:\\d\\d\\.\\d{3}  ${channel}  invalidate  from ${herald.origin}  \\(cache users: 2 keys\\)$`,
        'm',
      ),
    )
    expect(result.stdout).toContain('"k": [\n    "user:1",\n    "user:2"\n  ]')
  })
})

describe('herald doctor and stats', () => {
  it('doctor passes on the test server, exit 0', async () => {
    const result = await cli(['doctor'], db)
    expect(result.code, result.stdout + result.stderr).toBe(0)
    expect(result.stdout).toMatch(/^\[ ok \] connection/m)
    expect(result.stdout).toMatch(/^\[ ok \] role\s+primary/m)
    expect(result.stdout).toMatch(/^\[ ok \] listen\s+heard its own NOTIFY in \d+ ms on one session/m)
    expect(result.stdout).toMatch(/^\[ ok \] queue\s+pg_notification_queue_usage\(\) = \d+\.\d\d%/m)
    const json = await cli(['doctor', '--json'], db)
    const report = JSON.parse(json.stdout) as { ok: boolean; checks: { name: string; status: string }[] }
    expect(report.ok).toBe(true)
    expect(report.checks.map((check) => check.name)).toEqual([
      'connection',
      'server',
      'role',
      'listen',
      'queue',
      'listeners',
      'tables',
      'triggers',
    ])
  })

  it('doctor fails, exit 1, on a hot standby and on an unreachable server', async () => {
    await using standby = await startPostgres({ standby: true, label: 'cli-standby' })
    const result = await cli(['doctor', '--url', standby.url])
    expect(result.code).toBe(1)
    expect(result.stdout).toMatch(/^\[FAIL\] role\s+hot standby/m)
    const unreachable = await cli(['doctor', '--url', 'postgres://postgres:password@127.0.0.1:1/postgres'])
    expect(unreachable.code).toBe(1)
    expect(unreachable.stdout).toMatch(
      /^\[FAIL\] connection\s+postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/postgres: /m,
    )
    expect(unreachable.stdout).not.toContain('password')
  }, 120_000)

  it('stats shows Herald connections, the queue and the log tables', async () => {
    const applicationName = uniqueName('herald_stats')
    await using herald = await startedHerald({ connection: server.url, applicationName })
    const schema = uniqueName('herald')
    expect((await cli(['migrate', '--schema', schema], db)).code).toBe(0)
    const result = await cli(['stats', '--schema', schema, '--json'], db)
    expect(result.code, result.stderr).toBe(0)
    const stats = JSON.parse(result.stdout) as {
      connections: { applicationName: string; count: number }[]
      queueUsage: number
      tables: { table: string }[]
    }
    expect(stats.connections).toContainEqual(
      expect.objectContaining({ applicationName: `${applicationName}-listener`, count: 1 }),
    )
    expect(stats.queueUsage).toBeGreaterThanOrEqual(0)
    expect(stats.tables.map((table) => table.table)).toContain('cache_invalidations')
    const text = await cli(['stats', '--schema', schema], db)
    expect(text.code).toBe(0)
    expect(text.stdout).toContain(`${applicationName}-listener`)
    expect(text.stdout).toMatch(/queue: pg_notification_queue_usage\(\) = /)
    expect(herald.connected).toBe(true)
  })
})
