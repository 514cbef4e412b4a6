import { startPostgres } from '@herald/testing'

export interface BenchServer extends AsyncDisposable {
  readonly url: string
  /** Where the server came from: figures from a remote server include the network. */
  readonly source: 'DATABASE_URL' | 'embedded'
  /** `show server_version`. */
  readonly version: string
  /** Settings that change commit latency, and so every NOTIFY. */
  readonly settings: Readonly<Record<string, string>>
  close(): Promise<void>
}

/** DATABASE_URL if set, else a throwaway embedded server (tuned for speed: fsync off). */
export async function benchServer(): Promise<BenchServer> {
  const server = await startPostgres({ label: 'bench' })
  try {
    const [row] = await server.sql<{ version: string; fsync: string; synchronousCommit: string }[]>`
      select current_setting('server_version') as version,
             current_setting('fsync') as fsync,
             current_setting('synchronous_commit') as "synchronousCommit"`
    if (row === undefined) throw new Error('the server answered no row')
    return {
      url: server.url,
      source: server.embedded ? 'embedded' : 'DATABASE_URL',
      version: row.version,
      settings: { fsync: row.fsync, synchronous_commit: row.synchronousCommit },
      close: () => server.close(),
      [Symbol.asyncDispose]: () => server.close(),
    }
  } catch (error) {
    await server.close()
    throw error
  }
}
