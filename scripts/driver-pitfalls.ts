// Checks, against a real server, which postgres.js pitfalls of shared/DESIGN.md ("Known driver
// pitfalls") hold for the postgres.js installed in packages/core: run it as is for the default
// major, and through scripts/with-postgres-major.ts for the other. It prints one line per
// pitfall and exits 0 whatever it finds: what it measures is the driver, not Herald.
//
//   node --import tsx scripts/driver-pitfalls.ts
//   node --import tsx scripts/with-postgres-major.ts 4 -- node --import tsx scripts/driver-pitfalls.ts
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { startPostgres } from '@herald/testing'

const core = join(import.meta.dirname, '..', 'packages', 'core')
const version = (
  JSON.parse(readFileSync(join(core, 'node_modules', 'postgres', 'package.json'), 'utf8')) as {
    version: string
  }
).version

// The child resolves `postgres` from packages/core, the copy Herald runs on.
const VICTIM = `
import postgres from 'postgres'
const sql = postgres(process.env.PITFALL_URL, { max: 1, onnotice() {}, connection: { application_name: 'pitfall-victim' } })
try {
  if (process.argv[1] === 'begin') {
    await sql.begin(async (tx) => { console.log('READY'); await tx\`select pg_sleep(30)\` })
  } else {
    const reserved = await sql.reserve()
    console.log('READY')
    await reserved\`select pg_sleep(30)\`
  }
} catch (error) {
  console.log('REJECTED ' + (error.code ?? error.message))
}
await new Promise((resolve) => setTimeout(resolve, 1000))
await sql.end({ timeout: 1 })
console.log('SURVIVED')
`

interface Outcome {
  readonly exitCode: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs VICTIM, kills its backend once its query is in flight, and reports how it ended. */
async function killBackendUnder(mode: 'begin' | 'reserve', url: string, terminate: () => Promise<void>) {
  const child = spawn(process.execPath, ['--input-type=module', '-e', VICTIM, mode], {
    cwd: core,
    env: { ...process.env, PITFALL_URL: url },
  })
  let stdout = ''
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = new Promise<Outcome>((resolve) =>
    child.on('exit', (exitCode) => resolve({ exitCode, stdout, stderr })),
  )
  await new Promise<void>((resolve) =>
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString()
      if (stdout.includes('READY')) resolve()
    }),
  )
  await sleep(200)
  await terminate()
  const timeout = sleep(15_000).then(() => {
    child.kill('SIGKILL')
    return undefined
  })
  return (
    (await Promise.race([exited, timeout])) ?? { exitCode: null, stdout, stderr: 'hung: killed after 15 s' }
  )
}

function describeOutcome({ exitCode, stdout, stderr }: Outcome): string {
  const error = /^(\w*Error): .*$/m.exec(stderr)?.[0]
  if (stdout.includes('SURVIVED'))
    return `not reproduced: ${/REJECTED \S+/.exec(stdout)?.[0] ?? 'resolved'}, process lived`
  return `HOLDS: process exited ${exitCode} (${error ?? stderr.trim().split('\n').at(-1)})`
}

const server = await startPostgres({ label: 'driver-pitfalls' })
const lines: string[] = [`postgres.js ${version}`]
try {
  const terminate = async () => {
    await server.sql`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'pitfall-victim'`
  }
  for (const mode of ['begin', 'reserve'] as const) {
    const outcome = await killBackendUnder(mode, server.url, terminate)
    lines.push(
      `#1154/#1208 backend killed under sql.${mode}() with a query in flight: ${describeOutcome(outcome)}`,
    )
  }

  const sql = server.connect({ max: 2 })
  const [json] = await sql<
    { kind: string }[]
  >`select jsonb_typeof(${JSON.stringify({ a: 1 })}::jsonb) as kind`
  lines.push(
    `JSON string bound to ::jsonb: stored as a jsonb ${json?.kind}: ${json?.kind === 'string' ? 'HOLDS (encoded twice)' : 'not reproduced'}`,
  )

  // #1216: a transaction ended by idle_in_transaction_session_timeout goes on writing, elsewhere.
  await sql`create table if not exists pitfall_1216 (n int)`
  await sql`truncate pitfall_1216`
  const late = sql
    .begin(async (tx) => {
      await tx`set local idle_in_transaction_session_timeout = 200`
      await tx`select 1`
      await sleep(600)
      await tx`insert into pitfall_1216 values (1)`
    })
    .then(
      () => 'committed',
      (error: { code?: string }) => `rejected ${error.code ?? 'with an error'}`,
    )
  await sleep(300)
  await sql`insert into pitfall_1216 values (2)`
  const ended = await late
  const rows = await sql<{ n: number }[]>`select n from pitfall_1216 order by n`
  const leaked = rows.some((row) => row.n === 1)
  lines.push(
    `#1216 statement after idle_in_transaction_session_timeout: the transaction ${ended}, its insert ${leaked ? 'was committed anyway: HOLDS' : 'was not committed: not reproduced'}`,
  )
  await sql.end({ timeout: 1 })
} finally {
  await server.close()
}
console.log(lines.join('\n'))
