import { uniqueName } from '@herald/testing'
import { describe, expect, it } from 'vitest'
import { runExample } from './run-example.js'

describe('examples/feature-flags', () => {
  it('every flag change reaches both instances, the refused one none, and a late instance starts current', async () => {
    const { code, signal, stdout, stderr } = await runExample('feature-flags', [], {
      EXAMPLE_NAMESPACE: uniqueName('ex_flags'),
    })
    expect({ code, signal }, `stdout:\n${stdout}\nstderr:\n${stderr}`).toEqual({ code: 0, signal: null })
    for (const watcher of ['watcher-1', 'watcher-2']) {
      const lines = stdout.split('\n').filter((line) => line.startsWith(`  [${watcher}] `))
      expect(lines.map((line) => line.slice(watcher.length + 5))).toEqual([
        'flags at v0: newCheckout false, rolloutPercent 0, banner (unset); checkout: everyone gets the classic checkout',
        'v1 newCheckout: false → true (set); checkout: everyone gets the classic checkout',
        'v2 rolloutPercent: 0 → 25 (set); checkout: 25% of users get the new checkout',
        'v3 rolloutPercent: 25 → 50 (set); checkout: 50% of users get the new checkout',
        'v4 banner: (unset) → "The new checkout is here for half of you" (set)',
        'v5 rolloutPercent: 50 → 25 (rollback); checkout: 25% of users get the new checkout',
        'stopped',
      ])
    }
    expect(stdout).toContain(
      '[watcher-3] flags at v5: newCheckout true, rolloutPercent 25, banner "The new checkout',
    )
    expect(stdout).toMatch(/✓ refused: VALUE_INVALID: .*rolloutPercent/)
    expect(stdout).toContain('✓ Every change reached every instance; the refused one reached none.')
  })
})
