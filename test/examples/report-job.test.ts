import { uniqueName } from '@herald/testing'
import postgres from 'postgres'
import { afterAll, describe, expect, it } from 'vitest'
import { runExample } from './run-example.js'

describe('examples/report-job', () => {
  const sql = postgres(process.env['DATABASE_URL'] as string, { max: 1, onnotice: () => {} })
  afterAll(() => sql.end({ timeout: 1 }))

  it('one of three instances builds the report under the lock; the others wait for the release and read it', async () => {
    const schema = uniqueName('ex_report')
    const { code, signal, stdout, stderr } = await runExample('report-job', [], {
      EXAMPLE_SCHEMA: schema,
      REPORT_BUILD_MS: '800',
    })
    expect({ code, signal }, `stdout:\n${stdout}\nstderr:\n${stderr}`).toEqual({ code: 0, signal: null })

    const results = [
      ...stdout.matchAll(/\[(worker-\d)\] RESULT role=(\w+) builtBy=(\S+) token=(\d+) sha256=(\w+)/g),
    ]
    expect(results).toHaveLength(3)
    const builders = results.filter((result) => result[2] === 'built')
    expect(builders).toHaveLength(1)
    const builder = builders[0]?.[1]
    // Started together: the others found the lock held and waited for its release.
    expect(results.filter((result) => result[2] === 'waited').length).toBeGreaterThanOrEqual(1)
    for (const result of results) {
      expect(result[3]).toBe(builder)
      expect(result[5]).toBe(builders[0]?.[5])
    }
    expect(stdout).toMatch(
      new RegExp(
        `\\[${builder}\\] building the 2024-06-01 report \\(holding the lock, fencing token \\d+\\)`,
      ),
    )
    expect(stdout).toMatch(/is held by another instance: waiting for its release/)
    expect(stdout).toContain('✓ exactly one instance built the report')
    expect(stdout).toContain('✓ every instance read the same report, the one stored')
    expect(stdout).toMatch(/✓ done\n$/)
    const [row] = await sql<{ gone: boolean }[]>`select to_regnamespace(${schema}) is null as gone`
    expect(row?.gone).toBe(true)
  })
})
