import { HeraldError } from '../src/errors.js'

/** The `code` of the HeraldError `action` throws, or undefined when it does not throw. */
export function codeOf(action: () => unknown): string | undefined {
  try {
    action()
  } catch (error) {
    return error instanceof HeraldError ? error.code : 'NOT_A_HERALD_ERROR'
  }
  return undefined
}
