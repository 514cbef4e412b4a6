/**
 * Starts PostgreSQL (unless DATABASE_URL is set) and two app instances that print the flags
 * (src/watcher.ts), then changes the flags from this process through its own `ConfigStore`:
 * each change appears on both instances. A value zod refuses is never written; a rollback is
 * one more version; an instance started last sees the current flags at once. Then it stops
 * everything and exits (0 when every change was seen where expected).
 */
import { ConfigStore } from '@herald/config'
import { Herald, HeraldError } from '@herald/core'
import { startPostgres, type PgServer } from '@herald/testing'
import postgres from 'postgres'
import { Child } from '@herald/example-support'
import { FLAGS, NAMESPACE, show } from './flags.js'

const STEP_TIMEOUT_MS = 15_000

function say(line = ''): void {
  process.stdout.write(`${line}\n`)
}

let server: PgServer | undefined
let sql: postgres.Sql | undefined
let herald: Herald | undefined
const watchers: Child[] = []
let failed = false

function startWatcher(name: string, url: string): Child {
  const child = new Child(name, new URL('./watcher.ts', import.meta.url), {
    DATABASE_URL: url,
    WATCHER: name,
    EXAMPLE_NAMESPACE: NAMESPACE,
  })
  watchers.push(child)
  return child
}

/** Waits until every running watcher has printed version `version` of `key`. */
async function seen(version: number, key: string, since: readonly number[]): Promise<void> {
  await Promise.all(
    watchers.map((watcher, index) =>
      watcher.waitForLine(new RegExp(`^v${version} ${key}: `), {
        since: since[index] ?? 0,
        timeoutMs: STEP_TIMEOUT_MS,
      }),
    ),
  )
}

const marks = (): number[] => watchers.map((watcher) => watcher.mark())

try {
  server = await startPostgres({ label: 'example-flags' })
  say(`PostgreSQL: ${server.embedded ? `embedded, 127.0.0.1:${server.port}` : 'DATABASE_URL'}`)
  const url = server.url
  sql = postgres(url, { max: 2, onnotice: () => {}, connection: { application_name: 'example-flags-admin' } })
  herald = new Herald({ connection: url, sql, applicationName: 'example-flags-admin' })
  await herald.start()
  const flags = new ConfigStore({ herald, schema: FLAGS, namespace: NAMESPACE })
  await flags.start()
  // A run before this one (on DATABASE_URL) may have left flags set: start from the defaults.
  for (const key of ['newCheckout', 'rolloutPercent', 'banner'] as const) {
    if (flags.get(key) !== FLAGS[key].parse(undefined)) await flags.reset(key)
  }
  say(`namespace "${NAMESPACE}" at version ${flags.version}`)
  say()

  say('Starting two app instances that print the flags')
  await Promise.all(
    ['watcher-1', 'watcher-2'].map((name) =>
      startWatcher(name, url).waitForLine(/^flags at v\d+/, { timeoutMs: STEP_TIMEOUT_MS }),
    ),
  )
  say()

  say("1. config.set('newCheckout', true)")
  let since = marks()
  const on = await flags.set('newCheckout', true)
  await seen(on, 'newCheckout', since)
  say(`   ✓ version ${on}, seen by both instances`)

  say("2. config.set('rolloutPercent', 25)")
  since = marks()
  const quarter = await flags.set('rolloutPercent', 25)
  await seen(quarter, 'rolloutPercent', since)
  say(`   ✓ version ${quarter}, seen by both instances`)

  say('3. rolloutPercent 50 and a banner, in one transaction: both land on commit, together')
  since = marks()
  const [half, banner] = await sql.begin(async (tx) => [
    await flags.set('rolloutPercent', 50, { tx }),
    await flags.set('banner', 'The new checkout is here for half of you', { tx }),
  ])
  await seen(half, 'rolloutPercent', since)
  await seen(banner, 'banner', since)
  say(`   ✓ versions ${half} and ${banner}, seen by both instances`)

  say("4. config.set('rolloutPercent', 150): zod refuses it, nothing is written")
  try {
    await flags.set('rolloutPercent', 150)
    throw new Error('rolloutPercent 150 was accepted')
  } catch (error) {
    if (!(error instanceof HeraldError) || error.code !== 'VALUE_INVALID') throw error
    say(`   ✓ refused: ${error.code}: ${error.message.split('\n')[0] ?? ''}`)
  }

  say("5. config.history('rolloutPercent')")
  for (const entry of await flags.history('rolloutPercent')) {
    say(
      `   v${entry.version}  ${entry.reset ? 'reset' : show(entry.value)}  by ${entry.changedBy} ` +
        `(${entry.applicationName}) at ${entry.changedAt.toISOString()}`,
    )
  }

  say(`6. config.rollback('rolloutPercent', ${quarter}): back to 25, as a new version`)
  since = marks()
  const back = await flags.rollback('rolloutPercent', quarter)
  await seen(back, 'rolloutPercent', since)
  say(`   ✓ version ${back}, seen by both instances`)

  say('7. A third instance starts now: it reads the current flags at once')
  const late = startWatcher('watcher-3', url)
  const [snapshot] = await late.waitForLine(/^flags at v\d+: .*$/, { timeoutMs: STEP_TIMEOUT_MS })
  const expected = `flags at v${back}: newCheckout true, rolloutPercent 25, banner ${show(flags.get('banner'))}`
  if (!snapshot.startsWith(expected))
    throw new Error(`watcher-3 printed "${snapshot}", expected "${expected}"`)
  say('   ✓ watcher-3 starts with rolloutPercent 25 and the banner')
  const leaked = watchers.filter((watcher) => watcher.printed(/rolloutPercent: .*→ 150/))
  if (leaked.length > 0) throw new Error(`${leaked.map((w) => w.name).join(', ')} saw the refused value 150`)
  say()
  say('✓ Every change reached every instance; the refused one reached none.')
} catch (error) {
  failed = true
  process.stderr.write(
    `feature-flags example failed: ${error instanceof Error ? error.message : String(error)}\n`,
  )
} finally {
  const exits = await Promise.all(watchers.map((watcher) => watcher.stop()))
  if (exits.some((exit) => exit.code !== 0)) failed = true
  await herald?.close()
  await sql?.end({ timeout: 2 })
  await server?.close()
  say(failed ? '✗ failed' : 'stopped')
  process.exitCode = failed ? 1 : 0
}
