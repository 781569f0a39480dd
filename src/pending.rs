//! Pending events: EventLite's wait conditions (`storeWhen`), file-compatible. An event whose
//! `waitFor` is not satisfied yet waits in `pending_events`, with one row per condition in
//! `wait_conditions`, both laid out exactly as EventLite creates them (the same statements,
//! so even `sqlite_master` reads the same). A condition once satisfied stays satisfied; a
//! pending event whose groups are all satisfied becomes `ready`, and `executeReadyEvents`
//! stores it. Statuses go pending → ready → executed, or pending → expired / cancelled.
//!
//! Every append of the queue re-evaluates the pending events it can affect, so that `ready` is
//! visible to the next call, and a queue with no pending events must pay nothing for that. So
//! [`Pending`] keeps in memory which correlation ids pending events wait on: an append looks its
//! correlation ids up there and evaluates only the pending events waiting on them, and with
//! nothing waiting it does no SQL at all. Another program (EventLite, another queue) may add
//! pending events to the file at any time; SQLite's data version counter says when the file
//! changed other than by this connection, and the map is then read again (see
//! [`Pending::after_append`]).

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::ffi::{c_uint, c_void};

use rusqlite::types::ValueRef;
use rusqlite::{ffi, params, OptionalExtension};
use serde::Deserialize;
use serde_json::Value;

use crate::condition::{self, correlation_of, Group};
use crate::connection::Connection;
use crate::error::{Error, Result};
use crate::jsvalue::{truthy, value_to_number};
use crate::row::write_string;
use crate::store::{Appended, WriteTxn};

/// EventLite's own statements, whitespace included: SQLite keeps the text in `sqlite_master`.
const CREATE_PENDING_EVENTS: &str = "CREATE TABLE IF NOT EXISTS pending_events (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      event_data TEXT NOT NULL,
      wait_conditions TEXT NOT NULL,
      created_at INTEGER NOT NULL,
      expires_at INTEGER,
      correlation_id TEXT,
      status TEXT DEFAULT 'pending' CHECK(status IN ('pending', 'ready', 'expired', 'executed', 'cancelled'))
    )";

const CREATE_WAIT_CONDITIONS: &str = "CREATE TABLE IF NOT EXISTS wait_conditions (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      pending_event_id INTEGER NOT NULL,
      condition_type TEXT NOT NULL,
      condition_data TEXT NOT NULL,
      satisfied BOOLEAN DEFAULT FALSE,
      FOREIGN KEY (pending_event_id) REFERENCES pending_events(id) ON DELETE CASCADE
    )";

/// EventLite's indexes on the two tables: name, then table and column.
const INDEXES: [(&str, &str); 5] = [
    ("idx_pending_status", "pending_events(status)"),
    ("idx_pending_correlation", "pending_events(correlation_id)"),
    ("idx_pending_expires", "pending_events(expires_at)"),
    ("idx_wait_conditions_pending", "wait_conditions(pending_event_id)"),
    ("idx_wait_conditions_satisfied", "wait_conditions(satisfied)"),
];

/// The columns of a `pending_events` row, in table order: the keys of the rows returned.
const ROW_COLUMNS: [&str; 7] =
    ["id", "event_data", "wait_conditions", "created_at", "expires_at", "correlation_id", "status"];
const ROW_SELECT: &str =
    "SELECT id, event_data, wait_conditions, created_at, expires_at, correlation_id, status FROM pending_events";

/// Whether both tables and their five indexes exist, so that opening need not write.
pub fn tables_current(conn: &rusqlite::Connection) -> Result<bool> {
    let mut names = vec!["pending_events", "wait_conditions"];
    names.extend(INDEXES.iter().map(|(name, _)| *name));
    let list = names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ");
    let present: i64 =
        conn.query_row(&format!("SELECT COUNT(*) FROM sqlite_master WHERE name IN ({list})"), [], |r| r.get(0))?;
    Ok(present == names.len() as i64)
}

/// Creates what is missing of the two tables and their indexes.
pub fn create_tables(conn: &rusqlite::Connection) -> Result<()> {
    conn.execute_batch(CREATE_PENDING_EVENTS)?;
    conn.execute_batch(CREATE_WAIT_CONDITIONS)?;
    for (name, on) in INDEXES {
        conn.execute_batch(&format!("CREATE INDEX IF NOT EXISTS {name} ON {on}"))?;
    }
    Ok(())
}

pub fn drop_tables(conn: &rusqlite::Connection) -> Result<()> {
    conn.execute_batch("DROP TABLE IF EXISTS wait_conditions; DROP TABLE IF EXISTS pending_events")?;
    Ok(())
}

/// SQLite's `SQLITE_FCNTL_DATA_VERSION` of the main database: a counter in the connection's
/// pager that moves by one at each commit of this connection, and by at least one when a
/// transaction of this connection starts and finds the file changed by another. Reading it
/// is a plain function call (about 80 ns here); `PRAGMA data_version`, which leaves out this
/// connection's own commits, runs a statement and starts a read transaction (4 to 6 µs here,
/// a tenth of a `store()`).
fn data_version(conn: &Connection) -> Result<u32> {
    let db = conn.handle()?;
    let mut version: c_uint = 0;
    // SAFETY: `db` is an open connection; this file control writes one unsigned int, at the
    // pointer given, which points at `version`.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            db.as_ptr(),
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_DATA_VERSION,
            (&mut version as *mut c_uint).cast::<c_void>(),
        )
    };
    if rc == ffi::SQLITE_OK {
        Ok(version)
    } else {
        Err(rusqlite::Error::SqliteFailure(ffi::Error::new(rc), None).into())
    }
}

/// What the store knows of the file's pending events.
#[derive(Debug, Default)]
pub struct Pending {
    /// The data version that `waiting` reflects; `None` when unknown, which makes the next
    /// append read the pending events again.
    seen: Option<u32>,
    /// For each correlation id, the pending events with an unsatisfied condition on it.
    waiting: HashMap<String, Vec<i64>>,
    /// How many times the tables were read, for the tests that check appends do not.
    #[cfg(test)]
    resyncs: usize,
}

/// What `storeWhen` sends (see `lib/pending.js`): the texts EventLite stores, built by it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewPending {
    event_data: String,
    wait_conditions: String,
    created_at: i64,
    expires_at: Option<i64>,
    correlation_id: Option<String>,
    /// `[condition_type, condition_data]`, in EventLite's order.
    conditions: Vec<(String, String)>,
}

impl Pending {
    /// Reads which correlation ids pending events wait on, and the data version that reflects.
    /// A file without the tables (opened read-only) has none.
    pub fn resync(&mut self, conn: &Connection) -> Result<()> {
        self.seen = None;
        self.waiting.clear();
        #[cfg(test)]
        {
            self.resyncs += 1;
        }
        let tables: i64 = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('pending_events', 'wait_conditions')",
            )?
            .query_row([], |r| r.get(0))?;
        if tables == 2 {
            let mut stmt = conn.prepare_cached(
                "SELECT wc.pending_event_id, wc.condition_data, wc.satisfied FROM pending_events pe \
                 JOIN wait_conditions wc ON wc.pending_event_id = pe.id WHERE pe.status = 'pending'",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                if is_truthy(row.get_ref(2)?) {
                    continue;
                }
                let Some(correlation_id) = json(row.get_ref(1)?).as_ref().and_then(correlation_of) else { continue };
                let pending_id: i64 = row.get(0)?;
                let ids = self.waiting.entry(correlation_id).or_default();
                if ids.last() != Some(&pending_id) {
                    ids.push(pending_id);
                }
            }
        }
        // The counter as the last statement found it: `waiting` is what that statement read.
        self.seen = Some(data_version(conn)?);
        Ok(())
    }

    /// [`Pending::resync`] where a failure has nowhere to go: after a commit of ours, which
    /// stands (a caller told of an error would retry it), or when the store opens. A failed
    /// resync leaves `seen` unknown, so the next append reads again: that is all it can do.
    pub fn refresh(&mut self, conn: &Connection) {
        let _ = self.resync(conn);
    }

    /// Called after a write that failed: what happened to the counter is unknown.
    pub fn forget(&mut self) {
        self.seen = None;
    }

    /// Re-evaluates the pending events that wait on the correlation ids of the events just
    /// appended. Called after the append's commit, which stands whatever happens here: a
    /// failure is not reported (the caller would retry a write that succeeded) but makes the
    /// next append read everything again.
    pub fn after_append(&mut self, conn: &Connection, appended: Appended) {
        if self.reevaluate(conn, appended).is_err() {
            self.seen = None;
        }
    }

    fn reevaluate(&mut self, conn: &Connection, appended: Appended) -> Result<()> {
        let version = data_version(conn)?;
        match self.seen {
            // The append's own commit is all that moved the counter: no other connection
            // changed the file since `waiting` was read, and an append changes no pending event.
            Some(seen) if version == seen.wrapping_add(1) => self.seen = Some(version),
            _ => self.resync(conn)?,
        }
        if self.waiting.is_empty() {
            return Ok(());
        }
        let last_id = appended.first_id + appended.count as i64 - 1;
        let mut affected = BTreeSet::new();
        {
            let mut stmt = conn.prepare_cached(
                "SELECT DISTINCT correlation_id FROM queue WHERE id BETWEEN ?1 AND ?2 AND correlation_id IS NOT NULL",
            )?;
            let mut rows = stmt.query([appended.first_id, last_id])?;
            while let Some(row) = rows.next()? {
                if let Ok(correlation_id) = row.get_ref(0)?.as_str() {
                    affected.extend(self.waiting.get(correlation_id).into_iter().flatten());
                }
            }
        }
        if affected.is_empty() {
            return Ok(());
        }
        let txn = WriteTxn::begin(conn)?;
        for id in affected {
            evaluate(conn, id)?;
        }
        txn.commit()?;
        self.resync(conn)
    }

    /// `storeWhen`: stores the pending event and its conditions, and evaluates them at once, in
    /// one transaction. Returns the pending event's id.
    pub fn store_when(&mut self, conn: &Connection, payload: &str) -> Result<i64> {
        let new: NewPending = serde_json::from_str(payload)
            .map_err(|e| Error::InvalidEvent(format!("storeWhen: malformed pending event: {e}")))?;
        if let Some((kind, _)) = new.conditions.iter().find(|(kind, _)| Group::of_condition_type(kind).is_none()) {
            return Err(Error::InvalidEvent(format!("storeWhen: unknown condition type {kind}")));
        }
        let txn = WriteTxn::begin(conn)?;
        conn.prepare_cached(
            "INSERT INTO pending_events (event_data, wait_conditions, created_at, expires_at, correlation_id, status) \
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending')",
        )?
        .execute(params![
            new.event_data,
            new.wait_conditions,
            new.created_at,
            new.expires_at,
            new.correlation_id
        ])?;
        let id = conn.last_insert_rowid();
        let mut insert = conn.prepare_cached(
            "INSERT INTO wait_conditions (pending_event_id, condition_type, condition_data, satisfied) VALUES (?1, ?2, ?3, 0)",
        )?;
        for (kind, data) in &new.conditions {
            insert.execute(params![id, kind, data])?;
        }
        evaluate(conn, id)?;
        txn.commit()?;
        self.refresh(conn);
        Ok(id)
    }

    /// `checkAllPendingEvents`: evaluates every pending event; returns the ready rows.
    pub fn check_all(&mut self, conn: &Connection) -> Result<String> {
        let any: bool = conn
            .prepare_cached("SELECT EXISTS(SELECT 1 FROM pending_events WHERE status = 'pending')")?
            .query_row([], |r| r.get(0))?;
        if any {
            let txn = WriteTxn::begin(conn)?;
            for id in ids(conn, "SELECT id FROM pending_events WHERE status = 'pending' ORDER BY created_at, id", [])? {
                evaluate(conn, id)?;
            }
            txn.commit()?;
            self.refresh(conn);
        }
        rows_with_status(conn, "ready")
    }

    /// `expirePendingEvents`: marks `expired` the pending events whose `expires_at` is before
    /// `now`; returns them as they now are.
    pub fn expire(&mut self, conn: &Connection, now: i64) -> Result<String> {
        const DUE: &str = "status = 'pending' AND expires_at IS NOT NULL AND expires_at < ?1";
        let due = ids(conn, &format!("SELECT id FROM pending_events WHERE {DUE} ORDER BY created_at, id"), [now])?;
        let mut expired = Vec::with_capacity(due.len());
        if !due.is_empty() {
            let txn = WriteTxn::begin(conn)?;
            let mut update =
                conn.prepare_cached(&format!("UPDATE pending_events SET status = 'expired' WHERE {DUE} AND id = ?2"))?;
            for id in due {
                if update.execute([now, id])? == 1 {
                    expired.push(id);
                }
            }
            drop(update);
            txn.commit()?;
            self.refresh(conn);
        }
        let mut out = String::from("[");
        for id in expired {
            write_rows(&mut out, conn, &format!("{ROW_SELECT} WHERE id = ?1"), [id])?;
        }
        out.push(']');
        Ok(out)
    }

    /// `cancelPendingEvent`: whether it was pending (and is now cancelled).
    pub fn cancel(&mut self, conn: &Connection, id: i64) -> Result<bool> {
        let changed = conn
            .prepare_cached("UPDATE pending_events SET status = 'cancelled' WHERE id = ?1 AND status = 'pending'")?
            .execute([id])?;
        if changed > 0 {
            self.refresh(conn);
        }
        Ok(changed > 0)
    }
}

/// Marks ready pending event `id` executed; false when it is not ready (another process took
/// it, or it never was). The caller runs it inside the transaction that stores the event.
pub fn claim(conn: &Connection, id: i64) -> Result<bool> {
    let changed = conn
        .prepare_cached("UPDATE pending_events SET status = 'executed' WHERE id = ?1 AND status = 'ready'")?
        .execute([id])?;
    Ok(changed == 1)
}

/// The rows with `status`, oldest first, as a JSON array of objects.
pub fn rows_with_status(conn: &Connection, status: &str) -> Result<String> {
    let mut out = String::from("[");
    write_rows(&mut out, conn, &format!("{ROW_SELECT} WHERE status = ?1 ORDER BY created_at, id"), [status])?;
    out.push(']');
    Ok(out)
}

/// The pending rows (status `pending`) of a correlation id, oldest first.
pub fn pending_by_correlation(conn: &Connection, correlation_id: &str) -> Result<String> {
    let mut out = String::from("[");
    let sql = format!("{ROW_SELECT} WHERE status = 'pending' AND correlation_id = ?1 ORDER BY created_at, id");
    write_rows(&mut out, conn, &sql, [correlation_id])?;
    out.push(']');
    Ok(out)
}

fn ids(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<Vec<i64>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let found = stmt.query_map(params, |r| r.get(0))?.collect::<rusqlite::Result<Vec<i64>>>()?;
    Ok(found)
}

/// Appends the rows of `sql` (which selects [`ROW_COLUMNS`]) as JSON objects to a JSON array
/// being written (a comma before each, unless it opens the array), with the values as stored: texts as strings (`event_data` and `wait_conditions` stay JSON
/// text, as EventLite returns them), integers as numbers.
fn write_rows(out: &mut String, conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<()> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    while let Some(row) = rows.next()? {
        if !out.ends_with('[') {
            out.push(',');
        }
        out.push('{');
        for (i, column) in ROW_COLUMNS.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_string(out, column);
            out.push(':');
            match row.get_ref(i)? {
                ValueRef::Null => out.push_str("null"),
                ValueRef::Integer(n) => out.push_str(itoa::Buffer::new().format(n)),
                ValueRef::Real(f) => {
                    out.push_str(&serde_json::Number::from_f64(f).map_or("null".into(), |n| n.to_string()))
                }
                ValueRef::Text(bytes) | ValueRef::Blob(bytes) => write_string(out, &String::from_utf8_lossy(bytes)),
            }
        }
        out.push('}');
    }
    Ok(())
}

/// A stored JSON text, parsed; `None` when it is not JSON.
fn json(value: ValueRef<'_>) -> Option<Value> {
    match value {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => serde_json::from_slice(bytes).ok(),
        _ => None,
    }
}

/// A stored value's truthiness as JavaScript sees what bun:sqlite returns for it (EventLite
/// stores `satisfied` as 0 or 1).
fn is_truthy(value: ValueRef<'_>) -> bool {
    match value {
        ValueRef::Null => false,
        ValueRef::Integer(n) => n != 0,
        ValueRef::Real(f) => f != 0.0 && !f.is_nan(),
        ValueRef::Text(text) => !text.is_empty(),
        ValueRef::Blob(_) => true,
    }
}

/// One `wait_conditions` row.
struct Stored {
    id: i64,
    group: Option<Group>,
    data: Option<Value>,
    satisfied: bool,
}

impl Stored {
    /// Its place in a sequence, as EventLite sorts by it (`order`, which it writes).
    fn order(&self) -> f64 {
        value_to_number(self.data.as_ref().and_then(|d| d.get("order")))
    }
}

/// EventLite's `_checkPendingEventConditions`: evaluates the unsatisfied conditions of
/// pending event `id` (in their row order, so that a sequence satisfied at once is satisfied
/// in one pass), records those now satisfied, and marks the event `ready` when its groups are.
/// Inside the caller's write transaction.
fn evaluate(conn: &Connection, id: i64) -> Result<()> {
    let head = conn
        .prepare_cached("SELECT status, wait_conditions FROM pending_events WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get_ref(0)?.as_str().map(str::to_owned).ok(), json(r.get_ref(1)?))))
        .optional()?;
    let Some((Some(status), groups)) = head else { return Ok(()) };
    if status != "pending" {
        return Ok(());
    }
    let mut conditions = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT id, condition_type, condition_data, satisfied FROM wait_conditions WHERE pending_event_id = ?1 ORDER BY id",
        )?;
        let mut rows = stmt.query([id])?;
        while let Some(row) = rows.next()? {
            conditions.push(Stored {
                id: row.get(0)?,
                group: row.get_ref(1)?.as_str().ok().and_then(Group::of_condition_type),
                data: json(row.get_ref(2)?),
                satisfied: is_truthy(row.get_ref(3)?),
            });
        }
    }
    for at in 0..conditions.len() {
        let condition = &conditions[at];
        if condition.satisfied {
            continue;
        }
        let (Some(group), Some(data)) = (condition.group, &condition.data) else { continue };
        let met =
            (group != Group::Sequence || earlier_steps_met(&conditions, at)) && condition::is_met(conn, group, data)?;
        if met {
            conn.prepare_cached("UPDATE wait_conditions SET satisfied = 1 WHERE id = ?1")?.execute([condition.id])?;
            conditions[at].satisfied = true;
        }
    }
    if groups.is_some_and(|groups| is_ready(&groups, &conditions)) {
        conn.prepare_cached("UPDATE pending_events SET status = 'ready' WHERE id = ?1")?.execute([id])?;
    }
    Ok(())
}

/// Whether every sequence step before the one at `at` is satisfied: the steps sorted by
/// `order`, and the first `order` of them checked, as EventLite's loop does.
fn earlier_steps_met(conditions: &[Stored], at: usize) -> bool {
    let mut steps: Vec<&Stored> = conditions.iter().filter(|c| c.group == Some(Group::Sequence)).collect();
    steps.sort_by(|a, b| a.order().partial_cmp(&b.order()).unwrap_or(Ordering::Equal));
    let before = conditions[at].order();
    let mut i = 0;
    while (i as f64) < before {
        match steps.get(i) {
            Some(step) if step.satisfied => i += 1,
            _ => return false,
        }
    }
    true
}

/// Whether the groups that `waitFor` (the `wait_conditions` column) names are all satisfied:
/// every `all` and `sequence` condition, at least one `any` and `count` condition; a group
/// named without rows, or no group at all, is never ready.
fn is_ready(groups: &Value, conditions: &[Stored]) -> bool {
    let mut named = false;
    for group in Group::ALL {
        if !groups.get(group.key()).is_some_and(truthy) {
            continue;
        }
        named = true;
        let mut of_group = conditions.iter().filter(|c| c.group == Some(group)).peekable();
        let met = match group {
            Group::All | Group::Sequence => of_group.peek().is_some() && of_group.all(|c| c.satisfied),
            Group::Any | Group::Count => of_group.any(|c| c.satisfied),
        };
        if !met {
            return false;
        }
    }
    named
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Config, Store, MEMORY};

    fn pending_payload(correlation: &str, wait_for: &str, conditions: &[(&str, &str)]) -> String {
        serde_json::json!({
            "eventData": format!(r#"{{"cmd":"ship","data":{{}},"user":"","ip":"","version":1,"correlationId":"{correlation}","metadata":{{}}}}"#),
            "waitConditions": wait_for,
            "createdAt": 10,
            "expiresAt": 100,
            "correlationId": correlation,
            "conditions": conditions,
        })
        .to_string()
    }

    fn status(store: &Store, id: i64) -> String {
        store.conn().query_row("SELECT status FROM pending_events WHERE id = ?1", [id], |r| r.get(0)).unwrap()
    }

    fn append(store: &mut Store, cmd: &str, correlation: &str) {
        store.append(&format!(r#"[["{cmd}",{{}},"","",1,"{correlation}",null,{{}},1]]"#)).unwrap();
    }

    #[test]
    fn the_tables_are_eventlites() {
        let store = Store::open(Config::new(MEMORY)).unwrap();
        assert!(tables_current(store.conn()).unwrap());
        let sql: String = store
            .conn()
            .query_row("SELECT sql FROM sqlite_master WHERE name = 'wait_conditions'", [], |r| r.get(0))
            .unwrap();
        assert!(sql.starts_with("CREATE TABLE wait_conditions (\n      id INTEGER PRIMARY KEY AUTOINCREMENT,"));
        drop_tables(store.conn()).unwrap();
        assert!(!tables_current(store.conn()).unwrap());
    }

    #[test]
    fn an_append_makes_a_waiting_event_ready_and_nothing_else_is_touched() {
        let mut store = Store::open(Config::new(MEMORY)).unwrap();
        let (conn, pending) = store.pending();
        let all = r#"{"all":[{"pattern":"paid","correlationId":"o1"},{"pattern":"packed","correlationId":"o1"}]}"#;
        let id = pending
            .store_when(
                conn,
                &pending_payload(
                    "o1",
                    all,
                    &[
                        ("all_condition", r#"{"pattern":"paid","correlationId":"o1","index":0}"#),
                        ("all_condition", r#"{"pattern":"packed","correlationId":"o1","index":1}"#),
                    ],
                ),
            )
            .unwrap();
        assert_eq!(pending.waiting.get("o1"), Some(&vec![id]));
        append(&mut store, "paid", "o1");
        append(&mut store, "unrelated", "o2");
        assert_eq!(status(&store, id), "pending");
        append(&mut store, "packed", "o1");
        assert_eq!(status(&store, id), "ready", "ready right after the append");
        let (conn, pending) = store.pending();
        assert!(pending.waiting.is_empty(), "nothing waits any more");
        assert!(claim(conn, id).unwrap());
        assert!(!claim(conn, id).unwrap(), "claimed once only");
    }

    #[test]
    fn a_sequence_is_satisfied_in_order_only() {
        let mut store = Store::open(Config::new(MEMORY)).unwrap();
        append(&mut store, "step2", "s");
        let (conn, pending) = store.pending();
        let conditions = [
            ("sequence_condition", r#"{"pattern":"step1","correlationId":"s","index":0,"order":0}"#),
            ("sequence_condition", r#"{"pattern":"step2","correlationId":"s","index":1,"order":1}"#),
        ];
        let id = pending.store_when(conn, &pending_payload("s", r#"{"sequence":[{},{}]}"#, &conditions)).unwrap();
        let satisfied: i64 =
            store.conn().query_row("SELECT SUM(satisfied) FROM wait_conditions", [], |r| r.get(0)).unwrap();
        assert_eq!(satisfied, 0, "step2 happened, but step1 has not");
        append(&mut store, "step1", "s");
        assert_eq!(status(&store, id), "ready", "step1, then step2 in the same pass");
    }

    #[test]
    fn appends_read_the_tables_again_only_after_another_connection_wrote() {
        let dir = std::env::temp_dir().join(format!("eventlite-pending-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("events.sqlite").to_string_lossy().into_owned();
        let mut store = Store::open(Config::new(path.clone())).unwrap();
        let opened = store.pending().1.resyncs;
        for i in 0..50 {
            append(&mut store, "e", &format!("c{i}"));
            store.append_batch(r#"[["a",{},"","",1,"k",null,{},1],["b",{},"","",1,null,1,{},1]]"#).unwrap();
        }
        assert_eq!(store.pending().1.resyncs, opened, "this connection's own appends change no pending event");
        let other = rusqlite::Connection::open(&path).unwrap();
        other
            .execute_batch(
                r#"INSERT INTO pending_events (event_data, wait_conditions, created_at, correlation_id)
                     VALUES ('{"cmd":"go"}', '{"any":[{}]}', 1, 'x');
                   INSERT INTO wait_conditions (pending_event_id, condition_type, condition_data)
                     VALUES (last_insert_rowid(), 'any_condition', '{"pattern":"went","correlationId":"x","index":0}');"#,
            )
            .unwrap();
        append(&mut store, "went", "x");
        assert_eq!(status(&store, 1), "ready", "the other connection's pending event, found and evaluated");
        drop(other);
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn expire_and_cancel_change_only_pending_events() {
        let mut store = Store::open(Config::new(MEMORY)).unwrap();
        let (conn, pending) = store.pending();
        let one = r#"{"all":[{"pattern":"never","correlationId":"e"}]}"#;
        let condition = [("all_condition", r#"{"pattern":"never","correlationId":"e","index":0}"#)];
        let a = pending.store_when(conn, &pending_payload("e", one, &condition)).unwrap();
        let b = pending.store_when(conn, &pending_payload("e", one, &condition)).unwrap();
        assert!(pending.cancel(conn, b).unwrap());
        assert!(!pending.cancel(conn, b).unwrap());
        assert_eq!(pending.expire(conn, 100).unwrap(), "[]", "expires_at 100 is not before 100");
        let expired: Vec<Value> = serde_json::from_str(&pending.expire(conn, 101).unwrap()).unwrap();
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0]["id"], a);
        assert_eq!(expired[0]["status"], "expired");
        assert_eq!(expired[0]["expires_at"], 100);
        assert!(pending.waiting.is_empty());
        assert_eq!(pending_by_correlation(conn, "e").unwrap(), "[]");
    }
}
