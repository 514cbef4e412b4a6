import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Herald, type DisconnectedEvent } from '@herald/core'
import { uniqueName } from '@herald/testing'
import { describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** The demo's own steps time out after 10 s each; this only stops a hung process. */
const KILL_AFTER_MS = 80_000

interface DemoRun {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs the demo exactly as `pnpm demo` does, as a real process, with our environment. */
function runDemo(): Promise<DemoRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--conditions=@herald/source', '--import', 'tsx', 'examples/demo/src/main.ts'],
      { cwd: ROOT, env: process.env, stdio: ['ignore', 'pipe', 'pipe'], timeout: KILL_AFTER_MS },
    )
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')))
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
    child.on('error', reject)
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
}

describe('examples/demo', () => {
  it('runs every step against DATABASE_URL with three instances, touches no other connection, and exits 0', async () => {
    const url = process.env['DATABASE_URL']
    expect(url, 'the global setup sets DATABASE_URL').toBeTruthy()
    // A bystander on the same server: the demo must terminate its own instance's listener only.
    await using bystander = new Herald({ connection: url as string, applicationName: 'demo-bystander' })
    const disconnects: DisconnectedEvent[] = []
    bystander.on('disconnected', (event) => disconnects.push(event))
    await bystander.start()
    await bystander.subscribe(uniqueName('bystander'), () => {})
    const pid = bystander.stats().backendPid

    const { code, signal, stdout, stderr } = await runDemo()

    expect({ code, signal }, `stdout:\n${stdout}\nstderr:\n${stderr}`).toEqual({ code: 0, signal: null })
    expect(stderr).toBe('')
    // Piped, not a terminal: no colors.
    expect(stdout).not.toContain('\u001b[')
    const lines = [
      /^ *\+\d+\.\d{3}s {2}1\. Connect to PostgreSQL \(DATABASE_URL\)$/m,
      // One listener connection per instance, shared by every component.
      /✓ A ready {2}one listener connection, backend pid \d+, carrying orders, cache_invalidation, lock_release, herald_config/,
      /✓ B ready {2}one listener connection/,
      /✓ C ready {2}one listener connection/,
      /✓ A → B {2}order #1001: 2 × espresso {2}delivered in [\d.]+ (µs|ms)/,
      /✓ A → C {2}102,\d{3} bytes, sent as \d+ NOTIFYs, received as one message/,
      // Wrapping a cache.
      /✓ A {2}user:1 → Ada \(visits 0\): loaded from PostgreSQL in [\d.]+ (µs|ms), then a cache hit in [\d.]+ (µs|ms)/,
      /✓ C {2}user:1 → Ada \(visits 0\): loaded from PostgreSQL/,
      // invalidate(key) on A evicts on B and C, measured.
      /✓ B evicted user:1 [\d.]+ (µs|ms) after invalidate\(\) on A/,
      /✓ C evicted user:1 [\d.]+ (µs|ms) after invalidate\(\) on A/,
      /✓ A, B and C read user:1 → Ada Lovelace, loaded afresh/,
      /✓ 20 more rounds .*: eviction on the other instance [\d.]+ (µs|ms) after invalidate\(\) at the median/,
      // A bulk UPDATE from a plain client evicts through the trigger.
      /installInvalidationTrigger\(sql, \{ table: 'herald_demo_users_[0-9a-f]{8}', key: "'user:' \|\| id", cache: 'demo-users-[0-9a-f]{8}' \}\)/,
      /✓ A evicted all 5 keys [\d.]+ (µs|ms) after the UPDATE was sent/,
      /✓ B evicted all 5 keys/,
      /✓ C evicted all 5 keys/,
      /✓ A, B and C reload every user with the new visit count/,
      // A lock: woken on release, and after the holder's lock session is killed.
      /✓ A holds demo-report-[0-9a-f]{8} {2}fencing token \d+/,
      /B: tryAcquire → held elsewhere; acquire\(\) waits/,
      /✓ A released; B woken and holding it [\d.]+ (µs|ms) after release\(\)/,
      /pg_terminate_backend\(\d+\) {2}A's lock session, herald-demo-a-[0-9a-f]{8}-locks/,
      /A lost it: lock\.signal aborted with LOCK_LOST/,
      /✓ B holds it \d+ ms after A's session died {2}no release was sent: found by the 1 s sweep/,
      /✓ fencing tokens strictly increasing: \d+ < \d+ < \d+ < \d+/,
      // A config change seen by all three.
      /✓ A change: rateLimit 100 → 250, version \d+/,
      /✓ B change: rateLimit 100 → 250, version \d+ {2}[\d.]+ (µs|ms) after set\(\)/,
      /✓ C change: rateLimit 100 → 250, version \d+/,
      /✓ A: config\.set\('rateLimit', -5\) refused: VALUE_INVALID, nothing written/,
      /✓ A, B and C: config\.get\('rateLimit'\) → 250/,
      // A killed listener: nothing stale survives.
      /pg_terminate_backend\(\d+\) {2}C's listener session, herald-demo-c-[0-9a-f]{8}-listener/,
      /C disconnected \d+ ms later: .* \(CONNECTION_FAILED\)/,
      /✓ A and B evicted user:1 through the trigger/,
      /✓ C reconnected: downtimeMs \d+, new listener backend pid \d+/,
      /✓ C flushed its cache \(reason 'gap'\): 5 entries it can no longer vouch for/,
      /✓ C reads user:1 → Ada, Countess of Lovelace, loaded from PostgreSQL/,
      /✓ no stale entry: every cached user equals its row {2}\(entries: A 5, B 5, C 5\)/,
      /^ *\+\d+\.\d{3}s {2}10\. Summary$/m,
      /✓ A closed and exited {2}published \d+, received \d+, reconnects 0/,
      /✓ C closed and exited {2}published 0, received \d+, reconnects 1/,
      /✓ removed the run's table, trigger, config namespace and lock token/,
    ]
    for (const line of lines) expect(stdout).toMatch(line)
    expect(stdout).toContain('✓ demo connections to DATABASE_URL closed')
    expect(stdout).toContain('✓ Every step held.')
    expect(stdout).not.toContain('✗')
    // Nothing of the run is left on the shared server.
    const run = /run ([0-9a-f]{8})/.exec(stdout)?.[1] as string
    const [left] = await bystander.sql<{ tables: number; heads: number; tokens: number }[]>`
      select (select count(*) from pg_class where relname = ${`herald_demo_users_${run}`})::int as tables,
             (select count(*) from herald.config_heads where namespace = ${`demo-${run}`})::int as heads,
             (select count(*) from herald.lock_tokens where name = ${`demo-report-${run}`})::int as tokens`
    expect(left).toEqual({ tables: 0, heads: 0, tokens: 0 })

    expect(disconnects).toEqual([])
    expect(bystander.stats()).toMatchObject({ connected: true, backendPid: pid, reconnects: 0 })
  }, 90_000)
})
