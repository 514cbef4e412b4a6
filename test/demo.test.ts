import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Herald, type DisconnectedEvent } from '@herald/core'
import { uniqueName } from '@herald/testing'
import { describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** The demo's own steps time out after 10 s each; this only stops a hung process. */
const KILL_AFTER_MS = 55_000

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
  it('runs every step against DATABASE_URL, touches no other connection, and exits 0', async () => {
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
    expect(stdout).toMatch(/^ *\+\d+\.\d{3}s {2}1\. Connect to PostgreSQL \(DATABASE_URL\)$/m)
    expect(stdout).toMatch(/✓ A subscribed to "orders" {2}listener backend pid \d+/)
    expect(stdout).toMatch(/✓ B subscribed to "orders" {2}listener backend pid \d+/)
    expect(stdout).toMatch(/✓ A → B {2}order #1001: 2 × espresso {2}delivered in [\d.]+ (µs|ms)/)
    expect(stdout).toMatch(/✓ B → A {2}order #1002: 1 × croissant {2}delivered in /)
    expect(stdout).toMatch(
      /pg_terminate_backend\(\d+\) {2}B's listener session, herald-demo-b-[0-9a-f]{8}-listener/,
    )
    expect(stdout).toMatch(/B disconnected \d+ ms later: .* \(CONNECTION_FAILED\)/)
    expect(stdout).toMatch(/✓ B reconnected: downtimeMs \d+, new listener backend pid \d+/)
    expect(stdout).toMatch(/✓ A → B {2}order #1003: 3 × flat white/)
    expect(stdout).toMatch(/✓ B → A {2}order #1004: 2 × brioche/)
    expect(stdout).toMatch(/✓ A → B {2}102,\d{3} bytes, sent as \d+ NOTIFYs, received as one message/)
    expect(stdout).toMatch(/✓ sha256 [0-9a-f]{16}… on both ends/)
    expect(stdout).toMatch(/✓ A closed its Herald and exited {2}published 3, received 5, reconnects 0/)
    expect(stdout).toMatch(/✓ B closed its Herald and exited {2}published 2, received 5, reconnects 1/)
    expect(stdout).toContain('✓ demo connections to DATABASE_URL closed')
    expect(stdout).toContain('✓ Every step held.')
    expect(stdout).not.toContain('✗')

    expect(disconnects).toEqual([])
    expect(bystander.stats()).toMatchObject({ connected: true, backendPid: pid, reconnects: 0 })
  }, 60_000)
})
