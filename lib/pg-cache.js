'use strict'
// The query cache of a PostgreSQL queue (retrieveByIDCached, getTransactionCached), by the
// rule of every cache here: a cached read never returns what the uncached one would not. Other
// processes write to the same server, so nothing tells this one when a transaction grows:
// rows by id are immutable (events are only appended), and a cached transaction is returned
// only after its mark (newest id and count, one indexed query, no rows sent) is read again and
// found unchanged. The statistics are those of the SQLite cache (src/cache.rs `CacheStats`).
const { copyRow, copyRows } = require('./copy')

class PgCache {
  #config
  /** Entries by key, least recently used first: `{ value, stored, mark? }`. */
  #entries = new Map()
  #hits = 0
  #misses = 0
  #evictions = 0
  #expirations = 0

  /** `config`: the `cache` option, `{ enabled, maxSize, ttl }`. */
  constructor(config) {
    this.#config = config
  }

  /** `read()` resolves to the row or null; null is not cached, so the event is found once stored. */
  async byId(id, read) {
    if (!this.#config.enabled) return read()
    const key = `i${id}`
    const entry = this.#live(key)
    if (entry !== undefined) {
      this.#hits++
      return copyRow(entry.value)
    }
    this.#misses++
    const row = await read()
    if (row !== null) this.#put(key, { value: row })
    return row === null ? null : copyRow(row)
  }

  /** `readMark()` resolves to `[newestId, count]`, `read()` to the rows, in id order. */
  async transaction(correlationId, readMark, read) {
    if (!this.#config.enabled) return read()
    const key = `t${correlationId}`
    const entry = this.#live(key)
    if (entry !== undefined) {
      const [newest, count] = await readMark()
      if (newest === entry.mark[0] && count === entry.mark[1]) {
        this.#hits++
        return copyRows(entry.value)
      }
    }
    this.#misses++
    const rows = await read()
    this.#put(key, { value: rows, mark: [rows.length === 0 ? 0 : rows[rows.length - 1].id, rows.length] })
    return copyRows(rows)
  }

  clear() {
    this.#entries.clear()
  }

  stats() {
    // Deleting while iterating a Map is safe: the iteration goes on with the entries left.
    for (const [key, entry] of this.#entries) {
      if (this.#expired(entry)) {
        this.#entries.delete(key)
        this.#expirations++
      }
    }
    const lookups = this.#hits + this.#misses
    return {
      enabled: this.#config.enabled,
      size: this.#entries.size,
      maxSize: this.#config.maxSize,
      ttl: this.#config.ttl,
      hits: this.#hits,
      misses: this.#misses,
      evictions: this.#evictions,
      expirations: this.#expirations,
      hitRate: lookups === 0 ? 0 : this.#hits / lookups,
    }
  }

  #expired(entry) {
    return Date.now() - entry.stored >= this.#config.ttl
  }

  /** The entry of `key` while its ttl runs, made the most recently used; an expired one is dropped. */
  #live(key) {
    const entry = this.#entries.get(key)
    if (entry === undefined) return undefined
    this.#entries.delete(key)
    if (this.#expired(entry)) {
      this.#expirations++
      return undefined
    }
    this.#entries.set(key, entry)
    return entry
  }

  #put(key, entry) {
    entry.stored = Date.now()
    this.#entries.delete(key)
    this.#entries.set(key, entry)
    if (this.#entries.size > this.#config.maxSize) {
      this.#entries.delete(this.#entries.keys().next().value)
      this.#evictions++
    }
  }
}

module.exports = { PgCache }
