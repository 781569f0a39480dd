'use strict'
// The command line's progress bar: done / total, rate and time left, redrawn in place on
// stderr, and only when stderr is a terminal (a pipe or a log file gets no bar at all). A few
// lines of our own are simpler than a dependency for one bar.

const WIDTH = 24
/** Redraws at most this often: a faster redraw only costs time. */
const REDRAW_MS = 100

const count = (n) => Math.round(n).toLocaleString('en-US')

function duration(seconds) {
  if (!Number.isFinite(seconds)) return '--:--'
  const s = Math.round(seconds)
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}

class ProgressBar {
  #stream
  #label
  #unit
  #started = Date.now()
  #drawn = 0
  #shown = false

  constructor(label, unit, stream = process.stderr) {
    this.#stream = stream.isTTY ? stream : null
    this.#label = label
    this.#unit = unit
  }

  /** Shows `done` of `total` (total may be unknown: null). */
  update(done, total) {
    if (!this.#stream) return
    const now = Date.now()
    if (this.#shown && now - this.#drawn < REDRAW_MS && done !== total) return
    this.#drawn = now
    this.#shown = true
    const elapsed = (now - this.#started) / 1000
    const rate = elapsed > 0 ? done / elapsed : 0
    let line = `${this.#label} `
    if (total) {
      const filled = Math.min(WIDTH, Math.round((done / total) * WIDTH))
      line += `[${'#'.repeat(filled)}${'-'.repeat(WIDTH - filled)}] ${count(done)}/${count(total)} ${this.#unit}`
      line += `  ${count(rate)}/s  ${duration(rate > 0 ? (total - done) / rate : Infinity)} left`
    } else {
      line += `${count(done)} ${this.#unit}  ${count(rate)}/s`
    }
    this.#stream.write(`\r\x1b[K${line}`)
  }

  /** Clears the bar, leaving the line for what the command prints next. */
  clear() {
    if (this.#stream && this.#shown) this.#stream.write('\r\x1b[K')
    this.#shown = false
  }
}

module.exports = { ProgressBar }
