'use strict'
// The options and the result of the paginated reads. Options are checked here, before the
// native call; the core builds the whole page, rows and all, in one call (src/page.rs).
const { optionError, describe } = require('./errors')
const { readOptions, checkBoolean, checkInteger } = require('./options')
const { rowsOfSets } = require('./rows')
const { maxPageLimit: MAX_LIMIT, defaults } = require('./constants')

const PAGE_KEYS = ['limit', 'offset', 'cursor', 'withCount']
const DEFAULTS = Object.freeze({ limit: defaults.pageLimit, offset: 0, cursor: undefined, withCount: true })

/**
 * `limit` or `offset`: the spec makes anything but an integer in range a RangeError, a value
 * of another type included (unlike initQueue's options, where a wrong type is a TypeError).
 */
function checkBound(value, name, min, max) {
  if (typeof value !== 'number') {
    throw optionError(RangeError, `${name} must be an integer from ${min} to ${max}, got ${describe(value)}`)
  }
  return checkInteger(value, name, min, max)
}

/** `{ limit, offset, cursor, withCount }` with the defaults applied, as the native page reads take them. */
function pageOptions(given) {
  if (given === undefined) return DEFAULTS
  const options = readOptions(given, PAGE_KEYS, '')
  const limit = options.limit === undefined ? DEFAULTS.limit : checkBound(options.limit, 'limit', 1, MAX_LIMIT)
  const offset = options.offset === undefined ? 0 : checkBound(options.offset, 'offset', 0, Number.MAX_SAFE_INTEGER)
  const cursor = options.cursor ?? undefined // null means absent, as undefined does
  if (cursor !== undefined && typeof cursor !== 'string') {
    throw optionError(TypeError, `cursor must be a string (a page's nextCursor), got ${describe(cursor)}`)
  }
  if (cursor !== undefined && offset !== 0) {
    throw optionError(RangeError, 'give either cursor or offset, not both: the cursor already says where the page starts')
  }
  const withCount = options.withCount === undefined ? true : checkBoolean(options.withCount, 'withCount')
  return { limit, offset, cursor, withCount }
}

/**
 * The core refuses a malformed cursor, or one returned by another query, with ERR_INVALID_OPTION:
 * to the caller that is a value out of range, so it becomes a RangeError.
 */
const pageError = (err) => (err.code === 'ERR_INVALID_OPTION' ? optionError(RangeError, err.message) : err)

/** `{ events, totalCount, hasMore, nextOffset, nextCursor }` of a page's native parts (lib/rows.js). */
function pageOf(parts) {
  const page = JSON.parse(parts[0])
  page.events = rowsOfSets(parts, page.events)
  return page
}

/** Runs one native page read and returns its page (see `pageOf`). */
function readPage(read) {
  let text
  try {
    text = read()
  } catch (err) {
    throw pageError(err)
  }
  return pageOf(text)
}

/** As readPage, for a native read that is a Promise of its text (PostgreSQL's). */
async function readPageAsync(pending) {
  let text
  try {
    text = await pending
  } catch (err) {
    throw pageError(err)
  }
  return pageOf(text)
}

module.exports = { pageOptions, readPage, readPageAsync }
