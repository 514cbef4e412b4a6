import type { Herald } from '@herald/core'
import { once, type PgServer } from '@herald/testing'

/** Terminates one Herald's listener backend and resolves once the Herald knows. */
export async function cutListener(server: PgServer, herald: Herald): Promise<void> {
  const disconnected = once(herald, 'disconnected')
  await server.terminate(herald.stats().backendPid)
  await disconnected
}

/** Reconnects only after a second, so a test can act inside the gap. */
export const SLOW_RECONNECT = { reconnect: { minDelayMs: 1_000, maxDelayMs: 1_000 } } as const
