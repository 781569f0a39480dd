'use strict'
// Moving events in and out of a log, and copying it: exportEvents (JSONL lines), importEvents
// (lines, chunks of text or row objects, in atomic batches) and backup (SQLite's online
// backup, stepped from here so that progress can be reported between steps).
const { StringDecoder } = require('node:string_decoder')
const { coded, describe, optionError } = require('./errors')
const { readOptions, checkBoolean, checkInteger } = require('./options')

/** Rows per import transaction, and per export read. */
const BATCH = 1000
/** Pages per backup step: about 4 MB with SQLite's default page size. */
const BACKUP_STEP_PAGES = 1024

const importError = (message, extra) => coded(TypeError, 'ERR_INVALID_EVENT', `importEvents: ${message}`, extra)
const checkCallback = (value, name) => {
  if (value !== undefined && typeof value !== 'function') throw optionError(TypeError, `${name} must be a function, got ${describe(value)}`)
  return value
}

/** `{ from, to }` of exportEvents, as the stream's id range. */
function exportRange(given) {
  const { from = 0, to = null } = given === undefined ? {} : readOptions(given, ['from', 'to'], '')
  return {
    startId: checkInteger(from, 'from', 0, Number.MAX_SAFE_INTEGER),
    endId: to === null ? null : checkInteger(to, 'to', 0, Number.MAX_SAFE_INTEGER),
  }
}

/** The rows of `streamEvents(range)` as JSONL lines, each ending in a newline. */
async function * exportLines(streamEvents, range) {
  for await (const rows of streamEvents({ batchSize: BATCH, ...range })) {
    for (const row of rows) yield JSON.stringify(row) + '\n'
  }
}

/**
 * Where the rows of an import went: runs of consecutive old ids that became consecutive new
 * ids. An export of a log is one run per batch at most, so memory stays flat.
 */
class IdMap {
  #old = []
  #new = []
  #length = []

  add(oldId, newId) {
    const last = this.#old.length - 1
    if (last >= 0 && oldId === this.#old[last] + this.#length[last] && newId === this.#new[last] + this.#length[last]) {
      this.#length[last]++
    } else {
      this.#old.push(oldId)
      this.#new.push(newId)
      this.#length.push(1)
    }
  }

  /** The new id of `oldId`, or undefined when it was not imported. */
  get(oldId) {
    let lo = 0
    let hi = this.#old.length - 1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if (oldId < this.#old[mid]) hi = mid - 1
      else if (oldId >= this.#old[mid] + this.#length[mid]) lo = mid + 1
      else return this.#new[mid] + (oldId - this.#old[mid])
    }
    return undefined
  }
}

const isInteger = (value) => Number.isSafeInteger(value)
const isText = (value) => value === null || value === undefined || typeof value === 'string'

/** One exported row, checked, as the tuple the core imports (see src/transfer.rs). */
function toTuple(row, line, keepIds) {
  if (row === null || typeof row !== 'object' || Array.isArray(row)) throw importError(`line ${line} is not a row object`, { line })
  const { id, version = 1, datetime, user = null, ip = null, cmd, data = null, correlation_id: correlationId = null, causation_id: causationId = null, metadata = null } = row
  const wrong = (field, value) => importError(`line ${line}: ${field} is ${describe(value)}`, { line })
  if (!isInteger(id)) throw wrong('id', id)
  if (typeof cmd !== 'string' || cmd === '') throw wrong('cmd', cmd)
  if (!isInteger(datetime)) throw wrong('datetime', datetime)
  if (version !== null && !isInteger(version)) throw wrong('version', version)
  if (!isText(user)) throw wrong('user', user)
  if (!isText(ip)) throw wrong('ip', ip)
  if (!isText(correlationId)) throw wrong('correlation_id', correlationId)
  if (causationId !== null && !isInteger(causationId)) throw wrong('causation_id', causationId)
  return [keepIds ? id : null, version, datetime, user, ip, cmd, data, correlationId, causationId, metadata, null]
}

/**
 * The rows of `source`: row objects as they are; a string is one line (or several, separated
 * by newlines), as a line reader or exportEvents gives them; bytes (a Buffer from a file
 * stream) are raw chunks of a file, cut anywhere, joined into lines here.
 */
async function * rowsOf(source) {
  let line = 0
  let carry = ''
  const decoder = new StringDecoder('utf8')
  const parse = (text) => {
    line++
    if (text.trim() === '') return undefined
    try {
      return JSON.parse(text)
    } catch (cause) {
      throw importError(`line ${line} is not JSON: ${cause.message}`, { line, cause })
    }
  }
  for await (const item of source) {
    let lines
    if (typeof item === 'string') {
      lines = item.split('\n')
      if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop()
    } else if (item instanceof Uint8Array) {
      lines = (carry + decoder.write(item)).split('\n')
      carry = lines.pop()
    } else {
      line++
      yield { row: item, line }
      continue
    }
    for (const text of lines) {
      const row = parse(text)
      if (row !== undefined) yield { row, line }
    }
  }
  const rest = parse(carry + decoder.end())
  if (rest !== undefined) yield { row: rest, line }
}

/**
 * importEvents: appends the rows of an export in batches of BATCH, each atomic; causation ids
 * that point at an imported row follow it to its new id. Resolves to the count imported; a bad
 * row rejects with its line number, after the batches before it were stored.
 */
async function importRows(native, source, given) {
  if (source === null || source === undefined || (typeof source[Symbol.asyncIterator] !== 'function' && typeof source[Symbol.iterator] !== 'function')) {
    throw coded(TypeError, 'ERR_INVALID_ARG', `importEvents: the source must be an iterable or async iterable of lines or rows, got ${describe(source)}`)
  }
  const options = given === undefined ? {} : readOptions(given, ['keepIds', 'onProgress'], '')
  const keepIds = options.keepIds === undefined ? false : checkBoolean(options.keepIds, 'keepIds')
  const onProgress = checkCallback(options.onProgress, 'onProgress')
  if (keepIds && native.last() !== null) {
    throw optionError(Error, 'importEvents: keepIds needs an empty log (ids already in use would collide)')
  }
  const ids = new IdMap()
  let batch = []
  let oldIds = []
  let done = 0
  const flush = () => {
    if (batch.length === 0) return
    const firstId = native.importRows(JSON.stringify(batch), keepIds)
    if (!keepIds) oldIds.forEach((oldId, i) => ids.add(oldId, firstId + i))
    done += batch.length
    batch = []
    oldIds = []
    if (onProgress) onProgress({ done, total: null })
  }
  const inBatch = new Map()
  try {
    for await (const { row, line } of rowsOf(source)) {
      const tuple = toTuple(row, line, keepIds)
      if (!keepIds && tuple[8] !== null) {
        const parent = inBatch.get(tuple[8])
        if (parent !== undefined) tuple[10] = parent
        else tuple[8] = ids.get(tuple[8]) ?? tuple[8]
      }
      inBatch.set(row.id, batch.length)
      batch.push(tuple)
      oldIds.push(row.id)
      if (batch.length === BATCH) {
        flush()
        inBatch.clear()
      }
    }
    flush()
  } catch (err) {
    if (err && typeof err === 'object') err.imported = done
    throw err
  }
  return done
}

/** backup: steps the native backup until it is done, reporting pages after each step. */
async function backupTo(native, destination, given) {
  if (typeof destination !== 'string' || destination === '') {
    throw coded(TypeError, 'ERR_INVALID_ARG', `backup: destination must be a file path, got ${describe(destination)}`)
  }
  const options = given === undefined ? {} : readOptions(given, ['onProgress'], '')
  const onProgress = checkCallback(options.onProgress, 'onProgress')
  const job = native.backup(destination)
  try {
    for (;;) {
      const { done, total, finished } = await job.step(BACKUP_STEP_PAGES)
      if (onProgress) onProgress({ done, total })
      if (finished) return { totalPages: total, remainingPages: 0 }
    }
  } finally {
    job.close()
  }
}

module.exports = { exportRange, exportLines, importRows, backupTo }
