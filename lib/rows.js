'use strict'
// Rows arrive from the core as flat JSON arrays of values, ten per row in the column order of
// src/schema.rs (COLUMNS), with data and metadata spliced in as JSON: one row on its own, or
// many (a transaction, a page, a stream batch, a replay batch) one after another. Parsing that
// and building each row with one object literal costs less than parsing the same rows written
// as objects: the keys are known here, so the core does not send them.
//
// A read of many rows whose text would be too long for one string arrives in pieces
// (src/pieces.rs): an array of texts, the read's own first, then flat arrays of the values of
// the rows that follow.

const WIDTH = 10

/** The row whose values start at `values[j]`. */
function toRow(values, j) {
  return {
    id: values[j],
    version: values[j + 1],
    datetime: values[j + 2],
    user: values[j + 3],
    ip: values[j + 4],
    cmd: values[j + 5],
    data: values[j + 6],
    correlation_id: values[j + 7],
    causation_id: values[j + 8],
    metadata: values[j + 9],
  }
}

/** The rows of a flat array of values (a value left over after the last row is not one). */
function toRows(values) {
  const rows = new Array(Math.floor(values.length / WIDTH))
  for (let i = 0; i < rows.length; i++) rows[i] = toRow(values, i * WIDTH)
  return rows
}

/** Whether a replay batch ended early (src/stream.rs, Batch::into_replay): it holds one more value. */
const endedEarly = (values) => values.length % WIDTH !== 0

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

module.exports = { toRows, oneRow, endedEarly, firstPiece, appendPieces, rowsOf }
