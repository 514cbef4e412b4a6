export { Child } from './child.js'
export type { Exit } from './child.js'
