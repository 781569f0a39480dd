//! Idempotent appends: an event may carry an `idempotencyKey`, and the first append with a key
//! remembers it with the event's id, in the same write transaction as the event, in a table of
//! its own (the `queue` table, which EventLite shares, is untouched). A later append with the
//! same key finds it and stores nothing, so a write whose acknowledgement was lost (the writer
//! crashed after the commit) is safe to retry.

use rusqlite::OptionalExtension;

use crate::connection::Connection;
use crate::error::Result;

/// The most UTF-16 code units a key may hold (JavaScript's `length`, which is how callers
/// measure it).
pub const MAX_KEY_LENGTH: usize = 256;

pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS eventlite_idempotency_keys (
    key TEXT PRIMARY KEY,
    event_id INTEGER NOT NULL
) WITHOUT ROWID";

const LOOKUP: &str =
    "SELECT k.event_id FROM eventlite_idempotency_keys k JOIN queue q ON q.id = k.event_id WHERE k.key = ?1";
const REMEMBER: &str = "INSERT OR REPLACE INTO eventlite_idempotency_keys (key, event_id) VALUES (?1, ?2)";

/// Why `key` cannot be an idempotency key, if it cannot.
pub fn check_key(key: &str) -> std::result::Result<(), String> {
    if key.is_empty() {
        return Err("idempotencyKey must not be empty".into());
    }
    let length = key.encode_utf16().count();
    if length > MAX_KEY_LENGTH {
        return Err(format!("idempotencyKey must be at most {MAX_KEY_LENGTH} characters, got {length}"));
    }
    Ok(())
}

/// The id of the event first appended with `key`. A key whose event is gone (deleted by
/// another program) counts as never used. Call it inside the write transaction that appends,
/// so that no other writer can use the key between the lookup and [`remember`].
pub fn lookup(conn: &Connection, key: &str) -> Result<Option<i64>> {
    Ok(conn.prepare_cached(LOOKUP)?.query_row([key], |r| r.get(0)).optional()?)
}

/// Records that `key` was appended as event `id`, in the caller's write transaction.
pub fn remember(conn: &Connection, key: &str, id: i64) -> Result<()> {
    conn.prepare_cached(REMEMBER)?.execute(rusqlite::params![key, id])?;
    Ok(())
}

/// Forgets every key: the log they pointed into was reset.
pub fn forget_all(conn: &Connection) -> Result<()> {
    conn.execute_batch("DELETE FROM eventlite_idempotency_keys")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Connection {
        let conn = Connection::new(rusqlite::Connection::open_in_memory().unwrap());
        conn.execute_batch(crate::schema::CREATE_TABLE).unwrap();
        conn.execute_batch(CREATE_TABLE).unwrap();
        conn
    }

    #[test]
    fn keys_are_non_empty_and_at_most_256_utf16_units() {
        assert!(check_key("k").is_ok());
        assert!(check_key(&"x".repeat(256)).is_ok());
        assert!(check_key("").is_err());
        assert!(check_key(&"x".repeat(257)).is_err());
        // An astral character is two UTF-16 units, as JavaScript counts it.
        assert!(check_key(&"😀".repeat(128)).is_ok());
        assert!(check_key(&"😀".repeat(129)).is_err());
    }

    #[test]
    fn a_key_maps_to_its_event_while_the_event_exists() {
        let conn = memory();
        conn.execute_batch("INSERT INTO queue (datetime, cmd) VALUES (0, 'a'), (0, 'b')").unwrap();
        assert_eq!(lookup(&conn, "k").unwrap(), None);
        remember(&conn, "k", 2).unwrap();
        assert_eq!(lookup(&conn, "k").unwrap(), Some(2));
        conn.execute_batch("DELETE FROM queue WHERE id = 2").unwrap();
        assert_eq!(lookup(&conn, "k").unwrap(), None, "its event was deleted by another program");
        remember(&conn, "k", 1).unwrap();
        assert_eq!(lookup(&conn, "k").unwrap(), Some(1));
        forget_all(&conn).unwrap();
        assert_eq!(lookup(&conn, "k").unwrap(), None);
    }
}
