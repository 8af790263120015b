/**
 * Which served modules depend on which file, from the daemon's answers (`watchFiles` and
 * `dependencies`): lets the plugin act on Vite's own watcher events for those files.
 */

export class Dependents {
  #ids = new Map<string, Set<string>>()
  #files = new Map<string, string[]>()

  /** `id` now depends on exactly `files` (its latest answer). */
  set(id: string, files: string[]): void {
    this.delete(id)
    this.#files.set(id, files)
    for (const file of files) {
      let ids = this.#ids.get(file)
      if (!ids) this.#ids.set(file, (ids = new Set()))
      ids.add(id)
    }
  }

  delete(id: string): void {
    for (const file of this.#files.get(id) ?? []) {
      const ids = this.#ids.get(file)
      ids?.delete(id)
      if (ids?.size === 0) this.#ids.delete(file)
    }
    this.#files.delete(id)
  }

  /** The ids depending on `file` (none: an empty list). */
  of(file: string): string[] {
    return [...(this.#ids.get(file) ?? [])]
  }
}
