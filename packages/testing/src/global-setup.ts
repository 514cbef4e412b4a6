import { dataDirTemplate, removeDataDirTemplate } from './data-dir-template.js'
import { TEMPLATE_ENV } from './pg-constants.js'
import { startPostgres } from './start-postgres.js'

/**
 * vitest globalSetup: unless DATABASE_URL is already set, starts one embedded
 * server for the whole run and puts its URL in DATABASE_URL, so every test that
 * calls startPostgres() without `faults` shares it. It also names its initdb
 * template in HERALD_PG_TEMPLATE so that fault tests' own servers copy it
 * instead of running initdb once per worker.
 *
 * Plain env vars reach the test workers: vitest builds each fork's env from
 * process.env after the global setup has run (`provide`/`inject` would tie the
 * harness to vitest, and benchmarks use it too).
 */
export default async function setup(): Promise<() => Promise<void>> {
  if (process.env['DATABASE_URL']) return async () => {}
  process.env[TEMPLATE_ENV] = await dataDirTemplate()
  const server = await startPostgres({ label: 'shared' })
  process.env['DATABASE_URL'] = server.url
  return async () => {
    delete process.env['DATABASE_URL']
    delete process.env[TEMPLATE_ENV]
    await server.close()
    await removeDataDirTemplate()
  }
}
