#!/usr/bin/env node
import { run } from './run.js'

const controller = new AbortController()
// The first Ctrl-C stops a long-running command cleanly; a second one exits at once.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (controller.signal.aborted) process.exit(130)
    controller.abort(new Error(`received ${signal}`))
  })
}
// `herald listen | head`: a closed pipe ends the command, not with a stack trace.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') controller.abort(error)
})

const code = await run(process.argv.slice(2), {
  stdout: (text) => void process.stdout.write(text),
  stderr: (text) => void process.stderr.write(text),
  env: process.env,
  signal: controller.signal,
})
process.exitCode = code
