//! Waiting out a lock that SQLite does not wait for itself.
//!
//! SQLite calls the busy handler (`busy_timeout`) for the locks of ordinary reads and writes,
//! but not for every lock: leaving WAL mode (`PRAGMA journal_mode = DELETE`) needs the
//! database file to itself, and while another connection has the file open in WAL mode the
//! pragma fails with `SQLITE_BUSY` at once. [`retry_while_busy`] gives such a step the same
//! patience, sleeping as SQLite's own busy handler does between attempts.

use std::thread;
use std::time::{Duration, Instant};

use crate::error::Result;

/// SQLite's default busy handler's sleeps between attempts, in milliseconds; the last repeats.
const DELAYS_MS: [u64; 12] = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100];

/// Runs `attempt` until it returns anything but a `SQLITE_BUSY` error, or until `timeout` has
/// passed since the first attempt; then the last `SQLITE_BUSY` is the result.
pub fn retry_while_busy<T>(timeout: Duration, mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let mut delays = DELAYS_MS.iter().chain(std::iter::repeat(&DELAYS_MS[DELAYS_MS.len() - 1]));
    loop {
        match attempt() {
            Err(err) if err.code() == "SQLITE_BUSY" => {
                let left = timeout.saturating_sub(started.elapsed());
                match delays.next() {
                    Some(&ms) if !left.is_zero() => thread::sleep(left.min(Duration::from_millis(ms))),
                    _ => return Err(err),
                }
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn busy() -> Error {
        Error::Sqlite { code: "SQLITE_BUSY", message: "database is locked".into() }
    }

    #[test]
    fn busy_attempts_are_retried_until_one_succeeds() {
        let mut attempts = 0;
        let result = retry_while_busy(Duration::from_secs(60), || {
            attempts += 1;
            if attempts < 4 {
                Err(busy())
            } else {
                Ok(attempts)
            }
        });
        assert_eq!(result.unwrap(), 4);
    }

    #[test]
    fn other_errors_are_not_retried_and_busy_gives_up_at_the_timeout() {
        let mut attempts = 0;
        let result: Result<()> = retry_while_busy(Duration::from_secs(60), || {
            attempts += 1;
            Err(Error::InvalidOption("no".into()))
        });
        assert_eq!((result.unwrap_err().code(), attempts), ("ERR_INVALID_OPTION", 1));
        let mut attempts = 0;
        let result: Result<()> = retry_while_busy(Duration::ZERO, || {
            attempts += 1;
            Err(busy())
        });
        assert_eq!((result.unwrap_err().code(), attempts), ("SQLITE_BUSY", 1));
    }
}
