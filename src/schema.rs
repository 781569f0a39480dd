//! The `queue` table, exactly as EventLite Sourcing lays it out (so either library opens the
//! other's files), and the optional indexes that can be switched on and off by name.

use std::collections::HashMap;

use rusqlite::Connection;

use crate::error::{Error, Result};

pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    version INTEGER DEFAULT 1,
    datetime INTEGER NOT NULL,
    user TEXT,
    ip TEXT,
    cmd TEXT NOT NULL,
    data TEXT,
    correlation_id TEXT,
    causation_id INTEGER,
    metadata TEXT
)";

/// The columns every read selects, in the order `row::write_values` writes them.
pub const COLUMNS: [&str; 10] =
    ["id", "version", "datetime", "user", "ip", "cmd", "data", "correlation_id", "causation_id", "metadata"];

pub struct IndexDef {
    /// The option key users write in `indexes: { … }`.
    pub key: &'static str,
    /// The index name in the file, shared with EventLite.
    pub name: &'static str,
    pub columns: &'static str,
    pub default: bool,
}

pub const INDEXES: [IndexDef; 8] = [
    IndexDef { key: "correlation_id", name: "idx_correlation_id", columns: "correlation_id", default: true },
    IndexDef { key: "causation_id", name: "idx_causation_id", columns: "causation_id", default: true },
    IndexDef { key: "cmd", name: "idx_cmd", columns: "cmd", default: false },
    IndexDef { key: "user", name: "idx_user", columns: "user", default: false },
    IndexDef { key: "datetime", name: "idx_datetime", columns: "datetime", default: false },
    IndexDef { key: "version", name: "idx_version", columns: "version", default: false },
    IndexDef {
        key: "correlation_cmd",
        name: "idx_composite_correlation_cmd",
        columns: "correlation_id, cmd",
        default: false,
    },
    IndexDef { key: "user_datetime", name: "idx_composite_user_datetime", columns: "user, datetime", default: false },
];

/// Creates the table if it is missing, then checks it.
pub fn ensure_table(conn: &Connection) -> Result<()> {
    conn.execute_batch(CREATE_TABLE)?;
    check_table(conn)
}

/// Checks that the `queue` table has every column the library reads and writes. A foreign
/// table of the same name is refused here, with the missing columns named, rather than
/// failing later on the first insert.
pub fn check_table(conn: &Connection) -> Result<()> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('queue')")?;
    let present = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
    let missing: Vec<&str> = COLUMNS.iter().copied().filter(|c| !present.iter().any(|p| p == c)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::SchemaMismatch(format!(
            "the table `queue` in this file is not an event queue: it lacks the column(s) {}",
            missing.join(", ")
        )))
    }
}

/// Whether the table exists and the indexes already match `wanted`, so that opening a queue
/// need not take the write lock (and wait behind another process's writer) to change nothing.
pub fn is_current(conn: &Connection, wanted: &HashMap<String, bool>) -> Result<bool> {
    let table: i64 =
        conn.query_row("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'queue'", [], |r| r.get(0))?;
    if table == 0 {
        return Ok(false);
    }
    Ok(indexes_current(&present_indexes(conn)?, wanted))
}

/// Whether the optional indexes `present` (by name) already match `wanted`: applying
/// [`apply_indexes`] would change nothing.
pub fn indexes_current(present: &[String], wanted: &HashMap<String, bool>) -> bool {
    INDEXES.iter().all(|def| {
        let exists = present.iter().any(|n| n == def.name);
        match wanted.get(def.key).copied() {
            Some(want) => want == exists,
            None => exists || !def.default,
        }
    })
}

/// The keys given in `wanted` that the file does not match: an index to create or to drop.
pub fn unmet_index_keys(conn: &Connection, wanted: &HashMap<String, bool>) -> Result<Vec<&'static str>> {
    let present = present_indexes(conn)?;
    let unmet =
        |def: &&IndexDef| wanted.get(def.key).is_some_and(|&want| want != present.iter().any(|n| n == def.name));
    Ok(INDEXES.iter().filter(unmet).map(|def| def.key).collect())
}

/// Applies the `indexes` option: `true` creates, an explicit `false` drops, and a key left
/// out takes its default, where a default of `false` leaves an existing index alone (another
/// process on the same file may rely on it).
pub fn apply_indexes(conn: &Connection, wanted: &HashMap<String, bool>) -> Result<()> {
    check_index_keys(wanted)?;
    for def in &INDEXES {
        match wanted.get(def.key).copied() {
            Some(true) => create_index(conn, def)?,
            Some(false) => conn.execute_batch(&format!("DROP INDEX IF EXISTS {}", def.name))?,
            None if def.default => create_index(conn, def)?,
            None => {}
        }
    }
    Ok(())
}

/// Refuses an `indexes` key that names none of the eight indexes.
pub fn check_index_keys(wanted: &HashMap<String, bool>) -> Result<()> {
    match wanted.keys().find(|k| !INDEXES.iter().any(|d| d.key == k.as_str())) {
        Some(unknown) => {
            let known = index_keys().join(", ");
            Err(Error::InvalidOption(format!("indexes has no key {unknown:?}; known: {known}")))
        }
        None => Ok(()),
    }
}

fn create_index(conn: &Connection, def: &IndexDef) -> Result<()> {
    conn.execute_batch(&format!("CREATE INDEX IF NOT EXISTS {} ON queue({})", def.name, def.columns))?;
    Ok(())
}

/// The names of the optional indexes present on the table, sorted.
pub fn present_indexes(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare_cached("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'queue' ORDER BY name")?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(names.into_iter().filter(|n| INDEXES.iter().any(|d| d.name == n)).collect())
}

pub fn index_keys() -> Vec<&'static str> {
    INDEXES.iter().map(|d| d.key).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        ensure_table(&conn).unwrap();
        conn
    }

    #[test]
    fn defaults_create_the_two_core_indexes() {
        let conn = memory();
        apply_indexes(&conn, &HashMap::new()).unwrap();
        assert_eq!(present_indexes(&conn).unwrap(), ["idx_causation_id", "idx_correlation_id"]);
    }

    #[test]
    fn explicit_false_drops_and_omitted_false_keeps() {
        let conn = memory();
        let all: HashMap<String, bool> = INDEXES.iter().map(|d| (d.key.to_string(), true)).collect();
        apply_indexes(&conn, &all).unwrap();
        assert_eq!(present_indexes(&conn).unwrap().len(), 8);

        apply_indexes(&conn, &HashMap::new()).unwrap();
        assert_eq!(present_indexes(&conn).unwrap().len(), 8, "omitted keys leave indexes alone");

        let drop_cmd = HashMap::from([("cmd".to_string(), false), ("correlation_id".to_string(), false)]);
        apply_indexes(&conn, &drop_cmd).unwrap();
        let names = present_indexes(&conn).unwrap();
        assert!(!names.contains(&"idx_cmd".to_string()));
        assert!(!names.contains(&"idx_correlation_id".to_string()));
        assert_eq!(names.len(), 6);
    }

    #[test]
    fn is_current_tells_whether_opening_has_anything_to_change() {
        let conn = Connection::open_in_memory().unwrap();
        assert!(!is_current(&conn, &HashMap::new()).unwrap(), "no table yet");
        ensure_table(&conn).unwrap();
        assert!(!is_current(&conn, &HashMap::new()).unwrap(), "core indexes missing");
        apply_indexes(&conn, &HashMap::new()).unwrap();
        assert!(is_current(&conn, &HashMap::new()).unwrap());
        let cmd = HashMap::from([("cmd".to_string(), true)]);
        assert!(!is_current(&conn, &cmd).unwrap());
        apply_indexes(&conn, &cmd).unwrap();
        assert!(is_current(&conn, &cmd).unwrap());
        assert!(is_current(&conn, &HashMap::new()).unwrap(), "an omitted key keeps idx_cmd");
        assert!(!is_current(&conn, &HashMap::from([("cmd".to_string(), false)])).unwrap());
    }

    #[test]
    fn unmet_index_keys_are_the_explicit_keys_the_file_does_not_match() {
        let conn = memory();
        apply_indexes(&conn, &HashMap::new()).unwrap();
        let wanted = HashMap::from([
            ("correlation_id".to_string(), true),
            ("causation_id".to_string(), false),
            ("cmd".to_string(), true),
            ("user".to_string(), false),
        ]);
        assert_eq!(unmet_index_keys(&conn, &wanted).unwrap(), ["causation_id", "cmd"]);
        assert!(unmet_index_keys(&conn, &HashMap::new()).unwrap().is_empty(), "defaults are no request");
    }

    #[test]
    fn unknown_index_key_is_an_option_error() {
        let conn = memory();
        let err = apply_indexes(&conn, &HashMap::from([("colour".to_string(), true)])).unwrap_err();
        assert_eq!(err.code(), "ERR_INVALID_OPTION");
        assert!(err.to_string().contains("colour"));
        let empty = check_index_keys(&HashMap::from([(String::new(), true)])).unwrap_err();
        assert!(empty.to_string().contains(r#""""#), "an empty key shows as one: {empty}");
    }

    #[test]
    fn a_foreign_queue_table_is_refused_by_name() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE queue (id INTEGER PRIMARY KEY, payload TEXT)").unwrap();
        let err = ensure_table(&conn).unwrap_err();
        assert_eq!(err.code(), "ERR_SCHEMA_MISMATCH");
        assert!(err.to_string().contains("cmd"));
    }
}
