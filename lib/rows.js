'use strict'
// Rows arrive from the core as flat JSON arrays of values, one per column in the order of the
// columns the core exports (lib/constants.js), with data and metadata spliced in as JSON: one
// row on its own, or many (a transaction, children, a cached read) one after another. Parsing
// that and building each row with one object literal costs less than parsing the same rows
// written as objects: the keys are known here, so the core does not send them. A row read by
// id comes as its values instead (makeRow). Pages and the batches of streams and replays come
// as sets of rows in two parts (src/rowset.rs, rowsOfSets): an ArrayBuffer of ten numbers a
// row, and a JSON array of the values that are not numbers, to which the other cells refer.
//
// A read of many rows whose text would be too long for one string arrives in pieces
// (src/pieces.rs): an array of texts, the read's own first, then flat arrays of the values of
// the rows that follow.
const { columns, jsonColumns } = require('./constants')

const WIDTH = columns.length

/**
 * Compiles a function of `params` that builds a row as one object literal, its keys the
 * columns in order: every row gets the one shape, and building it costs what a literal written
 * out costs (a loop of `row[column] = value` costs several times more). `source(column, i)`
 * is the expression of the column's value, over `params` and the names in `scope`.
 */
function rowBuilder(params, source, scope = {}) {
  const fields = columns.map((column, i) => {
    const value = source(column, i)
    if (!/^[a-z_]+$/.test(column) || typeof value !== 'string') {
      throw new Error(`eventlite-native: cannot build the column ${JSON.stringify(column)} of a row`)
    }
    return `${column}: ${value}`
  })
  const body = `return (${params.join(', ')}) => ({ ${fields.join(', ')} })`
  return new Function(...Object.keys(scope), body)(...Object.values(scope))
}

/** The row whose values start at `values[j]`. */
const toRow = rowBuilder(['values', 'j'], (column, i) => `values[j + ${i}]`)

/** The rows of a flat array of values (a value left over after the last row is not one). */
function toRows(values) {
  const rows = new Array(Math.floor(values.length / WIDTH))
  for (let i = 0; i < rows.length; i++) rows[i] = toRow(values, i * WIDTH)
  return rows
}

/** Which 32-bit half of a float holds its low bits, in the platform's byte order. */
const LOW = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1 ? 0 : 1

/**
 * The row of a set whose cells start at `floats[j]`: each cell its number, or, when it is a
 * NaN, the value of `values` its low 32 bits index (`floats` and `words` view the same
 * buffer). `x` is a scratch variable, not an argument: the row is one expression, which
 * cannot declare one.
 */
const toSetRow = rowBuilder(['floats', 'words', 'values', 'j', 'x'], (column, i) =>
  `(x = floats[j + ${i}]) === x ? x : values[words[2 * j + ${2 * i + LOW}]]`)

/** Appends to `rows` the rows of one set: its cells' buffer and its parsed values. */
function appendSet(rows, buffer, values) {
  const floats = new Float64Array(buffer)
  const words = new Uint32Array(buffer)
  for (let j = 0; j < floats.length; j += WIDTH) rows.push(toSetRow(floats, words, values, j))
  return rows
}

/**
 * The rows of the parts a page, a stream or a replay hands over: `[text, cells, text, cells…]`
 * (src/lib.rs, RowParts), `values` the parsed values of the first set (a page's text holds more
 * than them). The sets after the first are plain JSON arrays.
 */
function rowsOfSets(parts, values = JSON.parse(parts[0])) {
  const rows = appendSet([], parts[1], values)
  for (let i = 2; i + 1 < parts.length; i += 2) appendSet(rows, parts[i + 1], JSON.parse(parts[i]))
  return rows
}

/** Whether a replay batch ended early (src/lib.rs, `range`): one more part follows its set. */
const endedEarly = (parts) => parts.length % 2 !== 0

/** One row's values (or null) as a row (or null). */
const oneRow = (values) => (values === null ? null : toRow(values, 0))

/** A read's own text: the text itself, or the first of its pieces. */
const firstPiece = (text) => (typeof text === 'string' ? text : text[0])

/** Appends the rows of the pieces after the first, if any, to `rows`. */
function appendPieces(rows, text) {
  if (typeof text === 'string') return rows
  for (let i = 1; i < text.length; i++) {
    for (const row of toRows(JSON.parse(text[i]))) rows.push(row)
  }
  return rows
}

/** The rows of a read of many that returns a flat array of values, in pieces or not. */
const rowsOf = (text) => appendPieces(toRows(JSON.parse(firstPiece(text))), text)

/**
 * A JSON column's value as `rowById` hands it over: its JSON text, or a number or null as it
 * is. `{}`, the metadata of every event stored without any, is built as a literal, which costs
 * a fraction of parsing it.
 */
const parsed = (value) => (typeof value !== 'string' ? value : value === '{}' ? {} : JSON.parse(value))

/**
 * The row of one event read by id, from its values as `rowById` (src/lib.rs) hands them over,
 * one argument per column: for a single row that costs less than its JSON text, as only
 * `data` and `metadata` are left to parse.
 */
const makeRow = rowBuilder(columns, (column) => (jsonColumns.includes(column) ? `parsed(${column})` : column), { parsed })

module.exports = { toRows, oneRow, makeRow, rowBuilder, endedEarly, firstPiece, appendPieces, rowsOf, rowsOfSets }
