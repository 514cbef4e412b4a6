import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'

export const repositoryRoot = join(import.meta.dirname, '..', '..')

/** One fenced TypeScript block of a markdown file. */
export interface CodeBlock {
  /** The markdown file, relative to the repository root. */
  readonly file: string
  /** Line of the block's first code line in `file` (1-based). */
  readonly line: number
  readonly code: string
  /** Fenced as ```ts run: a whole program, run against a real server by the docs test. */
  readonly runs: boolean
}

const FENCE = /^```(ts|typescript)(?:\s+(.*))?$/

/** Every TypeScript block of every markdown file in the repository (as git tracks them). */
export function typeScriptBlocks(): CodeBlock[] {
  const files = execFileSync('git', ['ls-files', '*.md'], { cwd: repositoryRoot, encoding: 'utf8' })
    .split('\n')
    .filter((file) => file !== '')
  return files.flatMap((file) => blocksOf(file, readFileSync(join(repositoryRoot, file), 'utf8')))
}

export function blocksOf(file: string, markdown: string): CodeBlock[] {
  const blocks: CodeBlock[] = []
  const lines = markdown.split('\n')
  for (let index = 0; index < lines.length; index++) {
    const fence = FENCE.exec(lines[index]!.trimEnd())
    if (fence === null) continue
    const start = index + 1
    let end = start
    while (end < lines.length && lines[end]!.trimEnd() !== '```') end++
    blocks.push({
      file,
      line: start + 1,
      code: lines.slice(start, end).join('\n') + '\n',
      runs: (fence[2] ?? '').split(/\s+/).includes('run'),
    })
    index = end
  }
  return blocks
}

/**
 * A block that quotes a program of `examples/` starts with a `// src/file.ts` comment (a path
 * beside the markdown file), and may switch files with another such comment. Those programs are
 * type-checked and run by their own tests, so a quote is checked to be one: its lines appear in
 * the file, in order.
 */
export interface Quote {
  readonly source: string
  readonly lines: readonly string[]
}

const QUOTE_HEADER = /^\/\/ (src\/[\w./-]+\.ts)\b/

export function quotesOf(block: CodeBlock): Quote[] | undefined {
  const lines = block.code.split('\n')
  if (!QUOTE_HEADER.test(lines[0] ?? '')) return undefined
  const directory = block.file.includes('/') ? block.file.slice(0, block.file.lastIndexOf('/')) : '.'
  const quotes: { source: string; lines: string[] }[] = []
  for (const line of lines) {
    const header = QUOTE_HEADER.exec(line)
    if (header !== null) {
      quotes.push({ source: join(directory, header[1]!), lines: [] })
      continue
    }
    const code = line.trim()
    // Comments in a quote are the documentation's own, and `...` marks what it leaves out.
    if (code === '' || code.startsWith('//') || code === '...') continue
    quotes.at(-1)!.lines.push(code)
  }
  return quotes
}

/** The quoted lines missing from their source, or not in its order. */
export function missingLines(quote: Quote): string[] {
  const source = readFileSync(join(repositoryRoot, quote.source), 'utf8')
    .split('\n')
    .map((line) => line.trim())
  const missing: string[] = []
  let at = 0
  for (const line of quote.lines) {
    const found = source.findIndex(
      (candidate, index) => index >= at && withoutComment(candidate) === withoutComment(line),
    )
    if (found === -1) missing.push(line)
    else at = found + 1
  }
  return missing
}

/** A trailing `// ...` comment is the documentation's, not the program's. */
function withoutComment(line: string): string {
  const at = line.search(/\s\/\/\s/)
  return (at === -1 ? line : line.slice(0, at)).trimEnd()
}
