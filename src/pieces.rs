//! How big the JSON text of a read may grow. A JavaScript string has a maximum length (V8's is
//! 2^29 - 24 characters, about 512 MB), and text longer than that cannot cross the boundary at
//! all: napi fails with an empty message. So rows are rendered in bounded amounts:
//!
//! - a batch of a stream or of `cycleThrough` ends early once it holds [`BATCH_BYTES`] (its
//!   text and cells, see [`crate::rowset`]), and the caller continues after its last row, so a
//!   replay holds one batch (plus one row) at a time whatever the size of the log and of its rows;
//! - a read that returns everything in one call (a transaction, children) is rendered in
//!   [`Pieces`]: the read's own JSON text with its first rows, then, when that would grow past
//!   [`BATCH_BYTES`], further flat arrays of row values, each its own string, which
//!   `lib/rows.js` appends to the first's rows; a page, in [`crate::rowset::RowSets`], the same
//!   way. Nearly every read is one piece, as before;
//! - a single row whose text is longer than a string may be is
//!   [`crate::error::Error::RowTooLarge`], naming it: no way of reading it can hand it to
//!   JavaScript.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::Result;
use crate::row::{write_values, Values};

/// The bytes of rows after which a batch ends and a piece is closed: large enough that the
/// crossings it adds cost nothing next to rendering and parsing that much text, small next to
/// what a string may hold.
pub const BATCH_BYTES: usize = 16 << 20;

/// V8's maximum string length on 64-bit platforms, until JavaScript says what its runtime's is
/// (see [`set_max_string`]).
const V8_MAX_STRING: usize = (1 << 29) - 24;

static MAX_STRING: AtomicUsize = AtomicUsize::new(V8_MAX_STRING);

/// Room kept in every piece for the text around its rows: a page's totals and cursor, a cached
/// read's slot, the brackets.
const FRAMING: usize = 4096;

/// Sets the longest string, in UTF-16 code units, that the runtime can create. A row's text is
/// measured in bytes, which are never fewer than its code units, so the check errs on the safe
/// side.
pub fn set_max_string(units: usize) {
    MAX_STRING.store(units, Ordering::Relaxed);
}

/// The two bounds a read renders within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// See [`BATCH_BYTES`].
    pub batch: usize,
    /// The longest text one row may render to.
    pub row: usize,
}

impl Limits {
    /// The bounds of this runtime.
    pub fn current() -> Limits {
        Limits { batch: BATCH_BYTES, row: MAX_STRING.load(Ordering::Relaxed).saturating_sub(FRAMING) }
    }
}

/// Appends one row's values to `out`, which is left as it was when the row is corrupt or longer
/// than `limits.row`.
pub fn write_row(out: &mut String, row: &impl Values, limits: &Limits) -> Result<()> {
    let start = out.len();
    let written = write_values(out, row, limits.row);
    if written.is_err() {
        out.truncate(start);
    }
    written
}

/// The JSON text of a read that returns all its rows in one call, in pieces (see the module's
/// documentation).
pub struct Pieces {
    /// The read's own text, with its first rows; the read writes what follows them.
    pub first: String,
    /// Flat arrays of row values, each still to be closed with `]`.
    more: Vec<String>,
    /// Rows in the last piece.
    rows: usize,
    limits: Limits,
}

impl Pieces {
    /// Pieces whose first starts with `head`, rows to follow.
    pub fn new(head: String) -> Pieces {
        Pieces::within(head, Limits::current())
    }

    pub fn within(head: String, limits: Limits) -> Pieces {
        Pieces { first: head, more: Vec::new(), rows: 0, limits }
    }

    fn last(&mut self) -> &mut String {
        self.more.last_mut().unwrap_or(&mut self.first)
    }

    fn start_piece(&mut self, capacity: usize) {
        let mut piece = String::with_capacity(capacity + 2);
        piece.push('[');
        self.more.push(piece);
        self.rows = 0;
    }

    /// Appends one row, comma-separated from the one before; in a new piece when the last one
    /// holds [`Limits::batch`] already, or when the row would make it longer than a string may
    /// be. Nothing is appended when the row cannot be read.
    pub fn row(&mut self, row: &impl Values) -> Result<()> {
        let limits = self.limits;
        if self.rows > 0 && self.last().len() >= limits.batch {
            self.start_piece(limits.batch);
        }
        let rows = self.rows;
        let out = self.last();
        let start = out.len();
        if rows > 0 {
            out.push(',');
        }
        if let Err(err) = write_row(out, row, &limits) {
            out.truncate(start);
            return Err(err);
        }
        if rows > 0 && out.len() > limits.row {
            let moved = out.split_off(start + 1);
            out.truncate(start);
            self.start_piece(moved.len());
            self.last().push_str(&moved);
        }
        self.rows += 1;
        Ok(())
    }

    /// Appends a row of ten nulls: a placeholder where a row may be missing.
    pub fn null_row(&mut self) {
        let rows = self.rows;
        let out = self.last();
        if rows > 0 {
            out.push(',');
        }
        out.push_str("null,null,null,null,null,null,null,null,null,null");
        self.rows += 1;
    }

    /// The pieces, the first as the read wrote it, the others closed.
    pub fn finish(self) -> Vec<String> {
        let mut all = Vec::with_capacity(1 + self.more.len());
        all.push(self.first);
        for mut piece in self.more {
            piece.push(']');
            all.push(piece);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Connection;
    use crate::row::select_list;
    use serde_json::Value;

    /// A table of rows whose `data` is a string of `sizes[i]` bytes, and their values rendered
    /// within `limits`, into pieces that start with `[`.
    fn render(sizes: &[usize], limits: Limits) -> (Result<()>, Vec<String>) {
        let conn = Connection::new(rusqlite::Connection::open_in_memory().unwrap());
        crate::schema::ensure_table(&conn).unwrap();
        for size in sizes {
            let data = format!("\"{}\"", "x".repeat(size - 2));
            conn.execute("INSERT INTO queue (datetime, cmd, data) VALUES (1, 'go', ?1)", [data]).unwrap();
        }
        let sql: &'static str = format!("SELECT {} FROM queue ORDER BY id", select_list()).leak();
        let mut stmt = conn.cached(sql).unwrap();
        let mut rows = stmt.rows();
        let mut pieces = Pieces::within(String::from("["), limits);
        let mut result = Ok(());
        while let Some(row) = rows.next().unwrap() {
            result = pieces.row(&row);
            if result.is_err() {
                break;
            }
        }
        pieces.first.push(']');
        (result, pieces.finish())
    }

    /// Each piece's ids.
    fn ids(pieces: &[String]) -> Vec<Vec<i64>> {
        let ids = |piece: &String| {
            let values: Vec<Value> = serde_json::from_str(piece).unwrap();
            values.chunks(10).map(|row| row[0].as_i64().unwrap()).collect()
        };
        pieces.iter().map(ids).collect()
    }

    #[test]
    fn a_piece_closes_once_it_holds_a_batch() {
        // Rows of a little more than 1,000 bytes: the third fills a piece.
        let limits = Limits { batch: 3000, row: 1 << 20 };
        let (result, pieces) = render(&[1000; 7], limits);
        result.unwrap();
        assert_eq!(ids(&pieces), [vec![1, 2, 3], vec![4, 5, 6], vec![7]]);
        let (_, one) = render(&[10, 10], Limits::current());
        assert_eq!(ids(&one), [vec![1, 2]], "a read of a few rows is one piece, as before");
    }

    #[test]
    fn a_row_that_would_overfill_a_piece_starts_the_next() {
        let limits = Limits { batch: 1 << 20, row: 1000 };
        let (result, pieces) = render(&[400, 400, 900, 10], limits);
        result.unwrap();
        assert_eq!(ids(&pieces), [vec![1, 2], vec![3, 4]]);
        assert!(pieces.iter().all(|p| p.len() <= 1000), "{:?}", pieces.iter().map(String::len).collect::<Vec<_>>());
    }

    #[test]
    fn a_row_longer_than_a_string_may_be_is_an_error_naming_it() {
        let limits = Limits { batch: 1 << 20, row: 1000 };
        let (result, pieces) = render(&[10, 990, 10], limits);
        let err = result.unwrap_err();
        assert_eq!((err.code(), err.row_id()), ("ERR_ROW_TOO_LARGE", Some(2)));
        assert!(
            err.to_string().starts_with("event 2 cannot be read: its JSON text is longer than 1000 bytes"),
            "{err}"
        );
        assert_eq!(ids(&pieces), [vec![1]], "nothing of the row is left behind");
    }

    #[test]
    fn the_limit_follows_the_runtime() {
        assert_eq!(Limits::current().row, V8_MAX_STRING - FRAMING);
    }
}
