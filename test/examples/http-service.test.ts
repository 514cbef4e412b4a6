import { uniqueName } from '@herald/testing'
import postgres from 'postgres'
import { afterAll, describe, expect, it } from 'vitest'
import { ExampleRun, runExample } from './run-example.js'

const url = process.env['DATABASE_URL'] as string

async function get(base: string, path: string) {
  const response = await fetch(`${base}${path}`)
  return {
    status: response.status,
    cache: response.headers.get('x-cache'),
    instance: response.headers.get('x-instance'),
    body: (await response.json()) as { id: number; name: string },
  }
}

describe('examples/http-service', () => {
  const sql = postgres(url, { max: 1, onnotice: () => {} })
  afterAll(() => sql.end({ timeout: 1 }))

  it('walks through a miss, a hit, a PUT on a and the eviction on b, then exits 0', async () => {
    const schema = uniqueName('ex_http')
    const { code, signal, stdout, stderr } = await runExample('http-service', ['--ports', '0,0'], {
      EXAMPLE_SCHEMA: schema,
    })
    expect({ code, signal }, `stdout:\n${stdout}\nstderr:\n${stderr}`).toEqual({ code: 0, signal: null })
    expect(stdout).toMatch(
      /GET http:\/\/127\.0\.0\.1:\d+\/users\/1\n {2}→ 200 \{"id":1,"name":"Ada",.*\} {2}X-Cache: miss/,
    )
    expect(stdout).toContain('✓ a: a hit, same user')
    expect(stdout).toContain('✓ b: a hit')
    expect(stdout).toMatch(/\[b\] evicted user:1 \(invalidate\)/)
    expect(stdout).toContain('✓ b: a miss, loaded afresh: Ada Lovelace')
    expect(stdout).toContain('✓ Both instances serve the new row: nothing stale.')
    expect(stdout).toMatch(/\[a\] stopped\n/)
    expect(stdout).toMatch(/\[b\] stopped\n/)
    // It removes its schema from a server it did not start.
    const [row] = await sql<{ gone: boolean }[]>`select to_regnamespace(${schema}) is null as gone`
    expect(row?.gone).toBe(true)
  })

  it('serves two instances: a hit per X-Cache, a PUT on one, the new row from the other', async () => {
    const run = new ExampleRun('http-service', ['--serve', '--ports', '0,0'], {
      EXAMPLE_SCHEMA: uniqueName('ex_http'),
    })
    try {
      const [, a = ''] = await run.waitForOutput(/^instance a: (http:\S+)$/m)
      const [, b = ''] = await run.waitForOutput(/^instance b: (http:\S+)$/m)
      await run.waitForOutput(/Serving until Ctrl-C/)

      const first = await get(a, '/users/2')
      expect(first).toMatchObject({
        status: 200,
        cache: 'miss',
        instance: 'a',
        body: { id: 2, name: 'Grace' },
      })
      expect(await get(a, '/users/2')).toMatchObject({ cache: 'hit', body: { name: 'Grace' } })
      expect(await get(b, '/users/2')).toMatchObject({ cache: 'miss', instance: 'b' })
      expect(await get(b, '/users/2')).toMatchObject({ cache: 'hit', body: { name: 'Grace' } })

      const put = await fetch(`${b}/users/2`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'Grace Hopper' }),
      })
      expect(put.status).toBe(200)
      expect(await put.json()).toMatchObject({ id: 2, name: 'Grace Hopper' })
      // a evicts when b's transaction commits, and says so.
      await run.waitForOutput(/\[a\] evicted user:2 \(invalidate\)/)
      expect(await get(a, '/users/2')).toMatchObject({ cache: 'miss', body: { name: 'Grace Hopper' } })
      expect(await get(a, '/users/2')).toMatchObject({ cache: 'hit', body: { name: 'Grace Hopper' } })

      // Bad input is a 4xx, not a crash.
      const bad = await fetch(`${a}/users/2`, { method: 'PUT', body: '{"name": 42}' })
      expect(bad.status).toBe(400)
      expect((await get(a, '/users/999')).status).toBe(404)
    } finally {
      run.kill('SIGINT')
    }
    const { code, stdout, stderr } = await run.exited
    expect(code, `stdout:\n${stdout}\nstderr:\n${stderr}`).toBe(0)
    expect(stdout).toMatch(/\[a\] stopped\n[^]*\[b\] stopped\n|\[b\] stopped\n[^]*\[a\] stopped\n/)
  })
})
