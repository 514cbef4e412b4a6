import { execFile } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { promisify } from 'node:util'
import ts from 'typescript'
import { afterAll, describe, expect, it } from 'vitest'
import {
  missingLines,
  quotesOf,
  repositoryRoot,
  typeScriptBlocks,
  type CodeBlock,
} from './markdown-blocks.js'

// Inside the repository, so that the blocks resolve @herald/* and the rest as a user's program
// resolves its dependencies.
const directory = join(repositoryRoot, '.herald-tmp', `docs-${process.pid}`)
const blocks = typeScriptBlocks()
const programs = blocks.filter((block) => quotesOf(block) === undefined)
const quoted = blocks.filter((block) => quotesOf(block) !== undefined)

function where(block: CodeBlock): string {
  return `${block.file}:${block.line}`
}

function fileOf(block: CodeBlock): string {
  return join(directory, `${block.file.replaceAll(/[^\w]+/g, '_')}_${block.line}.ts`)
}

afterAll(() => {
  rmSync(directory, { recursive: true, force: true })
})

describe('TypeScript in the documentation', () => {
  it('finds the blocks', () => {
    expect(programs.length).toBeGreaterThanOrEqual(10)
    expect(programs.filter((block) => block.runs).length).toBeGreaterThanOrEqual(4)
  })

  it('type-checks every block as a program of its own (strict, exactOptionalPropertyTypes, nodenext)', () => {
    mkdirSync(directory, { recursive: true })
    for (const block of programs) writeFileSync(fileOf(block), block.code)
    const base = ts.getParsedCommandLineOfConfigFile(
      join(repositoryRoot, 'tsconfig.base.json'),
      {},
      {
        ...ts.sys,
        onUnRecoverableConfigFileDiagnostic: (diagnostic) =>
          expect.fail(ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')),
      },
    )
    const options: ts.CompilerOptions = {
      ...base!.options,
      noEmit: true,
      declaration: false,
      declarationMap: false,
      sourceMap: false,
      // A block shows a call; what it returns is often left for the reader.
      noUnusedLocals: false,
      noUnusedParameters: false,
    }
    const program = ts.createProgram(programs.map(fileOf), options)
    const errors = ts.getPreEmitDiagnostics(program).map((diagnostic) => {
      const text = ts.flattenDiagnosticMessageText(diagnostic.messageText, '\n')
      if (diagnostic.file === undefined || diagnostic.start === undefined) return text
      const block = programs.find((candidate) => fileOf(candidate) === diagnostic.file!.fileName)
      const { line } = diagnostic.file.getLineAndCharacterOfPosition(diagnostic.start)
      const at =
        block === undefined
          ? relative(repositoryRoot, diagnostic.file.fileName)
          : `${block.file}:${block.line + line}`
      return `${at}: ${text}`
    })
    expect(errors).toEqual([])
  })

  it.each(quoted.map((block) => [where(block), block] as const))(
    'quotes its example program faithfully: %s',
    (_, block) => {
      for (const quote of quotesOf(block)!) expect(missingLines(quote), quote.source).toEqual([])
    },
  )

  it.each(programs.filter((block) => block.runs).map((block) => [where(block), block] as const))(
    'runs %s against a real server',
    async (_, block) => {
      mkdirSync(directory, { recursive: true })
      writeFileSync(fileOf(block), block.code)
      const { stdout, stderr } = await promisify(execFile)(
        process.execPath,
        ['--conditions=@herald/source', '--import', 'tsx', fileOf(block)],
        {
          cwd: repositoryRoot,
          env: { ...process.env, DATABASE_URL: process.env['DATABASE_URL'] },
          timeout: 30_000,
          encoding: 'utf8',
        },
      ).catch((error: Error & { stdout?: string; stderr?: string; code?: unknown; signal?: unknown }) => {
        expect.fail(
          `${where(block)} exited with ${String(error.code ?? error.signal)}\nstdout:\n${error.stdout}\nstderr:\n${error.stderr}`,
        )
      })
      // A program that ends with its output: nothing on stderr (no NOTICE, no warning).
      expect(stderr, stdout).toBe('')
    },
    40_000,
  )
})
