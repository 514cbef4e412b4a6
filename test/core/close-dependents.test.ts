import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { uniqueName } from '@herald/testing'
import { describe, expect, it } from 'vitest'
import { locksOn } from '../support/locks.js'

const ROOT = join(import.meta.dirname, '..', '..')
const CHILD = join(import.meta.dirname, 'children', 'close-herald-only.ts')
const EXIT_WITHIN_MS = 15_000

describe('herald.close() with a cache, a config store and locks built on it', () => {
  it(
    'closes them first: held locks are released and the process exits by itself',
    { timeout: 40_000 },
    async () => {
      const url = process.env['DATABASE_URL']
      expect(url, 'the global setup sets DATABASE_URL').toBeTruthy()
      const lockName = uniqueName('close-dependents')
      const child = spawn(
        process.execPath,
        ['--conditions=@herald/source', '--import', 'tsx', CHILD, lockName],
        {
          cwd: ROOT,
          env: process.env,
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      )
      let stdout = ''
      let stderr = ''
      child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')))
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
      // No `timeout` option: a child still alive after EXIT_WITHIN_MS is the failure, killed here.
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
      let killed = false
      const killer = setTimeout(() => {
        killed = true
        child.kill('SIGKILL')
      }, EXIT_WITHIN_MS)
      const code = await exited
      clearTimeout(killer)
      expect(killed, `still running ${EXIT_WITHIN_MS} ms after herald.close(); stdout: ${stdout}`).toBe(false)
      expect(code, stderr).toBe(0)
      expect(stdout).toContain('HOLDING')
      expect(stdout).toContain('CLOSED CLOSED CLOSED')
      // The lock the child held was released, not left for its session's death to free.
      await using other = await locksOn(url!)
      const lock = await other.locks.tryAcquire(lockName)
      expect(lock).not.toBeNull()
      await lock?.release()
    },
  )
})
