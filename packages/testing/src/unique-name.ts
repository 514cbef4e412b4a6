import { randomBytes } from 'node:crypto'

let counter = 0

/**
 * A fresh lowercase identifier (`[a-z0-9_]`, starts with a letter, under 40
 * characters, so no quoting) for channels and tables: random enough for test
 * files running in parallel against one server, plus a counter so it never
 * repeats within a process.
 */
export function uniqueName(prefix: string): string {
  let base = prefix
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, '_')
    .slice(0, 24)
  if (!/^[a-z_]/.test(base)) base = `n${base}`.slice(0, 24)
  const random = randomBytes(4).readUInt32BE().toString(36).padStart(7, '0')
  counter += 1
  return `${base}_${random}${counter.toString(36)}`
}
