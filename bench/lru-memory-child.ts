/**
 * The process `lru-memory.ts` measures in (started with `--expose-gc`): the heap that
 * 100,000 entries retain in an InvalidatingCache, with and without tags, in a bare lru-cache,
 * and as bare keys and values in two arrays.
 */
import { Herald } from '@herald/core'
import { InvalidatingCache } from '@herald/lru'
import { uniqueName } from '@herald/testing'
import { LRUCache } from 'lru-cache'
import { serveMeasurement } from './lib/measure-child.js'
import { interleave } from './lib/repetitions.js'
import { makeUser, userKey, type User } from './lib/users.js'
import { CONTENDERS, ENTRIES, type MemoryContender } from './lru-memory-plan.js'

/** What a build left on the heap, and how to let it go once measured. */
interface Built {
  readonly size: number
  release(): void | Promise<void>
}

const gc = (globalThis as { gc?: () => void }).gc

serveMeasurement(async ({ url, repetitions, discard }) => {
  if (gc === undefined) throw new Error('lru-memory-child needs node --expose-gc')
  const herald = new Herald({ connection: url, applicationName: 'bench-lru-memory' })
  let heraldError: Error | undefined
  herald.on('error', (error) => {
    heraldError ??= error
  })
  const channel = uniqueName('bench_mem')
  try {
    await herald.start()
    const builders: Record<MemoryContender, () => Built | Promise<Built>> = {
      data: fillData,
      bare: fillBare,
      herald: () => fillHerald(herald, channel, false),
      heraldTags: () => fillHerald(herald, channel, true),
    }
    const sizes: Record<MemoryContender, number[]> = { herald: [], bare: [], heraldTags: [], data: [] }
    const measured = await interleave(CONTENDERS, { repetitions, discard }, async (id) => {
      const bytes = await retained(builders[id], sizes[id])
      if (heraldError !== undefined) throw heraldError
      return bytes / ENTRIES
    })
    return {
      measured,
      checks: {
        entries: ENTRIES,
        // Every build held every entry: nothing refused (not live) or pushed out by max.
        ...Object.fromEntries(CONTENDERS.map((id) => [`${id}SizeMin`, Math.min(...sizes[id])])),
      },
    }
  } finally {
    await herald.close()
  }
})

/**
 * Bytes a build retains: heap used (plus ArrayBuffer backing stores, where lru-cache keeps its
 * linked list) after full collections, minus the same before it. The build is released
 * only after the second reading, so nothing it holds can be collected before then.
 */
async function retained(build: () => Built | Promise<Built>, sizes: number[]): Promise<number> {
  collect()
  const before = used()
  const built = await build()
  collect()
  const after = used()
  sizes.push(built.size)
  await built.release()
  collect()
  return after - before
}

function collect(): void {
  // Two passes: the first can leave garbage that only its own finalization made unreachable.
  gc?.()
  gc?.()
}

function used(): number {
  const { heapUsed, arrayBuffers } = process.memoryUsage()
  return heapUsed + arrayBuffers
}

function fillData(): Built {
  const keys: string[] = []
  const values: User[] = []
  for (let id = 0; id < ENTRIES; id++) {
    keys.push(userKey(id))
    values.push(makeUser(id))
  }
  return {
    size: keys.length,
    release: () => {
      keys.length = 0
      values.length = 0
    },
  }
}

function fillBare(): Built {
  const lru = new LRUCache<string, User>({ max: ENTRIES })
  for (let id = 0; id < ENTRIES; id++) lru.set(userKey(id), makeUser(id))
  return {
    size: lru.size,
    release: () => lru.clear(),
  }
}

async function fillHerald(herald: Herald, channel: string, tagged: boolean): Promise<Built> {
  const cache = new InvalidatingCache<User>({ herald, name: 'users', channel, max: ENTRIES })
  await cache.ready()
  for (let id = 0; id < ENTRIES; id++) {
    // One or two tags per entry, built per call as an app builds them: an organization
    // shared by 100 entries, and for every other entry a team shared by 10.
    const stored = tagged
      ? cache.set(userKey(id), makeUser(id), { tags: tagsOf(id) })
      : cache.set(userKey(id), makeUser(id))
    if (!stored) throw new Error('the cache refused a set: not live')
  }
  return {
    size: cache.size,
    release: () => cache.close(),
  }
}

function tagsOf(id: number): string[] {
  const org = `org:${id % 1_000}`
  return id % 2 === 0 ? [org] : [org, `team:${id % 10_000}`]
}
