import pgListen, { type Subscriber } from 'pg-listen'

export type { Subscriber }

export interface PgListen extends AsyncDisposable {
  readonly subscriber: Subscriber
  /** Rejects on pg-listen's first `'error'` or `'reconnect'`: race it against the work. */
  readonly failure: Promise<never>
  /** Idempotent. */
  close(): Promise<void>
}

/**
 * A connected pg-listen subscriber with the package's defaults (JSON payloads, a paranoid
 * check every 30 s), as an app would create it. It listens on nothing yet: attach handlers to
 * `subscriber.notifications`, then `listenTo` each channel.
 */
export async function openPgListen(url: string, applicationName: string): Promise<PgListen> {
  // The CommonJS entry is the factory carrying itself as `default`; NodeNext types the default
  // import as the module object, so `.default` is the one spelling both runtime and types accept.
  const subscriber = pgListen.default({ connectionString: url, application_name: applicationName })
  let fail: (error: Error) => void = () => {}
  const failure = new Promise<never>((_, reject) => {
    fail = reject
  })
  failure.catch(() => {})
  // Without a listener, an 'error' from the EventEmitter would crash the process instead.
  subscriber.events.on('error', (error) => fail(error))
  // pg-listen LISTENs again after a reconnect but cannot replay what was sent meanwhile, so a
  // reconnect during a run means a lost ping: fail, as a Herald 'error' does.
  subscriber.events.on('reconnect', (attempt) =>
    fail(new Error(`pg-listen reconnecting (attempt ${attempt})`)),
  )
  let closed: Promise<void> | undefined
  const close = (): Promise<void> => (closed ??= subscriber.close())
  try {
    await subscriber.connect()
  } catch (error) {
    await close().catch(() => {})
    throw error
  }
  return { subscriber, failure, close, [Symbol.asyncDispose]: close }
}
