/**
 * An app instance that reads the flags: prints them at start, then every change as it
 * arrives (and what the app now does), until stopped with Ctrl-C or SIGTERM.
 *
 *   DATABASE_URL=postgres://… pnpm watch
 *
 * src/main.ts (`pnpm start`) starts two of these, then changes the flags.
 */
import { ConfigStore } from '@herald/config'
import { Herald } from '@herald/core'
import { checkout, FLAGS, NAMESPACE, show } from './flags.js'

const url = process.env['DATABASE_URL']
if (!url) {
  process.stderr.write('watcher.ts needs DATABASE_URL (or run `pnpm start`, which starts PostgreSQL)\n')
  process.exit(2)
}
const name = process.env['WATCHER'] ?? `watcher-${process.pid}`

function log(line: string): void {
  process.stdout.write(`${line}\n`)
}

const herald = new Herald({ connection: url, applicationName: `example-flags-${name}` })
herald.on('reconnected', ({ downtimeMs }) =>
  log(`listener back after ${downtimeMs} ms: catching up by version`),
)
herald.on('error', (error) => log(`herald error ${error.code}: ${error.message}`))

const flags = new ConfigStore({ herald, schema: FLAGS, namespace: NAMESPACE })
flags.on('change', ({ key, previous, value, version, reason }) => {
  const effect = key === 'banner' ? '' : `; checkout: ${checkout(flags.all())}`
  log(`v${version} ${key}: ${show(previous)} → ${show(value)} (${reason})${effect}`)
})
flags.on('error', (error) => log(`flags error ${error.code}: ${error.message}`))

let stopping = false
async function stop(): Promise<void> {
  if (stopping) return
  stopping = true
  await flags.close()
  await herald.close()
  log('stopped')
}
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => void stop())

try {
  await herald.start()
  await flags.start()
  const all = flags.all()
  log(
    `flags at v${flags.version}: newCheckout ${show(all.newCheckout)}, rolloutPercent ${show(all.rolloutPercent)}, ` +
      `banner ${show(all.banner)}; checkout: ${checkout(all)}`,
  )
} catch (error) {
  log(`could not start: ${error instanceof Error ? error.message : String(error)}`)
  await stop()
  process.exitCode = 1
}
