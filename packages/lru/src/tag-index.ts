/** Which cached keys carry which tags, kept in step with the cache's own entries. */
export class TagIndex {
  readonly #keysByTag = new Map<string, Set<string>>()
  readonly #tagsByKey = new Map<string, readonly string[]>()

  get size(): number {
    return this.#tagsByKey.size
  }

  set(key: string, tags: readonly string[]): void {
    this.remove(key)
    if (tags.length === 0) return
    this.#tagsByKey.set(key, tags)
    for (const tag of tags) {
      let keys = this.#keysByTag.get(tag)
      if (keys === undefined) {
        keys = new Set()
        this.#keysByTag.set(tag, keys)
      }
      keys.add(key)
    }
  }

  remove(key: string): void {
    const tags = this.#tagsByKey.get(key)
    if (tags === undefined) return
    this.#tagsByKey.delete(key)
    for (const tag of tags) {
      const keys = this.#keysByTag.get(tag)
      keys?.delete(key)
      if (keys?.size === 0) this.#keysByTag.delete(tag)
    }
  }

  /** Keys carrying any of `tags`, copied so the caller may evict while iterating. */
  keysOf(tags: readonly string[]): string[] {
    const found = new Set<string>()
    for (const tag of tags) for (const key of this.#keysByTag.get(tag) ?? []) found.add(key)
    return [...found]
  }

  clear(): void {
    this.#keysByTag.clear()
    this.#tagsByKey.clear()
  }
}
