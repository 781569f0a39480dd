//! The write path of the stream conditions through `Store`: expected versions and idempotency
//! keys, alone and together, in single appends and batches, and versions that stay right while
//! another connection (as EventLite would) appends to the same file.

use eventlite_native::error::Error;
use eventlite_native::metrics::WriteKind;
use eventlite_native::store::{Checked, Config, Store, MEMORY};
use eventlite_native::version::FOLD_LIMIT;
use serde_json::{json, Value};

/// An event: `(cmd, correlation id, causation id, expected version, key)`.
type Event<'a> = (&'a str, Option<&'a str>, Option<i64>, Option<i64>, Option<&'a str>);

fn payload(events: &[Event<'_>]) -> String {
    let tuples: Vec<Value> = events
        .iter()
        .map(|(cmd, corr, caus, expected, key)| match (expected, key) {
            (None, None) => json!([cmd, {}, "", "", 1, corr, caus, {}, 0]),
            _ => json!([cmd, {}, "", "", 1, corr, caus, {}, 0, expected, key]),
        })
        .collect();
    serde_json::to_string(&tuples).unwrap()
}

fn count(store: &Store) -> i64 {
    store.conn().query_row("SELECT COUNT(*) FROM queue", [], |r| r.get(0)).unwrap()
}

fn checked(first_id: i64, count: usize, duplicates: Vec<(usize, i64)>) -> Checked {
    Checked { first_id, count, duplicates }
}

#[test]
fn expected_versions_count_the_events_before_them_in_the_batch() {
    let mut store = Store::open(Config::new(MEMORY)).unwrap();
    let batch = payload(&[
        ("a", Some("s"), None, Some(0), None),
        ("b", Some("s"), None, None, None),
        ("c", Some("s"), None, Some(2), None),
        ("d", None, Some(1), Some(3), None),
    ]);
    assert_eq!(store.append_checked(&batch, WriteKind::Batch).unwrap(), checked(1, 4, vec![]));
    assert_eq!(store.stream_version("s").unwrap(), 4, "the child inherited the stream");

    let late = payload(&[("e", Some("t"), None, Some(0), None), ("f", Some("s"), None, Some(3), None)]);
    let Err(Error::VersionConflict(conflict)) = store.append_checked(&late, WriteKind::Batch) else {
        panic!("expected a conflict")
    };
    assert_eq!(
        serde_json::to_value(&*conflict).unwrap(),
        json!({ "correlationId": "s", "expectedVersion": 3, "actualVersion": 4, "index": 1 })
    );
    assert_eq!(count(&store), 4, "nothing of the batch was stored");
    assert_eq!(store.stream_version("t").unwrap(), 0);
    assert_eq!(store.metrics().unwrap().errors_total, 1);
}

#[test]
fn an_expected_version_needs_a_correlation_id() {
    let mut store = Store::open(Config::new(MEMORY)).unwrap();
    let orphan = payload(&[("a", None, Some(99), Some(0), None)]);
    assert_eq!(store.append_checked(&orphan, WriteKind::Single).unwrap_err().code(), "ERR_INVALID_EVENT");
    assert_eq!(count(&store), 0);
}

#[test]
fn repeated_keys_store_nothing_and_name_the_first_event() {
    let mut store = Store::open(Config::new(MEMORY)).unwrap();
    let first = payload(&[("a", Some("s"), None, None, Some("k1"))]);
    assert_eq!(store.append_checked(&first, WriteKind::Single).unwrap(), checked(1, 1, vec![]));
    assert_eq!(store.append_checked(&first, WriteKind::Single).unwrap(), checked(0, 0, vec![(0, 1)]));
    let batch = payload(&[
        ("b", Some("s"), None, None, Some("k2")),
        ("c", Some("s"), None, None, Some("k1")),
        ("d", Some("s"), None, None, None),
        ("e", Some("s"), None, None, Some("k2")),
    ]);
    let done = store.append_checked(&batch, WriteKind::Batch).unwrap();
    assert_eq!(done, checked(2, 2, vec![(1, 1), (3, 2)]), "a repeat within the batch names the batch's own event");
    let text: Value = serde_json::from_str(&done.to_json(store.conn()).unwrap()).unwrap();
    assert_eq!(text["duplicates"], json!([[1, 1], [3, 2]]));
    assert_eq!((text["rows"][0][0].clone(), text["rows"][0][5].clone()), (json!(1), json!("a")));
    assert_eq!((text["rows"][1][0].clone(), text["rows"][1][5].clone()), (json!(2), json!("b")));
    assert_eq!(count(&store), 3);
    assert_eq!(store.metrics().unwrap().writes_total, 3);
}

#[test]
fn a_repeat_wins_over_its_expected_version_so_that_a_retry_is_safe() {
    let mut store = Store::open(Config::new(MEMORY)).unwrap();
    let write = payload(&[("a", Some("s"), None, Some(0), Some("once"))]);
    store.append_checked(&write, WriteKind::Single).unwrap();
    // The stream is at 1 now: the retry's expected 0 would conflict, but it is a repeat.
    assert_eq!(store.append_checked(&write, WriteKind::Single).unwrap(), checked(0, 0, vec![(0, 1)]));
    // A conflict in a batch takes back the keys the batch remembered before it.
    let failing = payload(&[("b", Some("s"), None, None, Some("new")), ("c", Some("s"), None, Some(0), None)]);
    assert_eq!(store.append_checked(&failing, WriteKind::Batch).unwrap_err().code(), "ERR_VERSION_CONFLICT");
    let retry = payload(&[("b", Some("s"), None, None, Some("new"))]);
    assert_eq!(store.append_checked(&retry, WriteKind::Single).unwrap(), checked(2, 1, vec![]));
}

#[test]
fn the_plain_append_refuses_conditions_it_would_not_honour() {
    let mut store = Store::open(Config::new(MEMORY)).unwrap();
    let conditional = payload(&[("a", Some("s"), None, Some(0), None)]);
    assert_eq!(store.append(&conditional).unwrap_err().code(), "ERR_INVALID_EVENT");
    assert_eq!(count(&store), 0);
}

#[test]
fn versions_stay_right_while_another_connection_appends_and_resets() {
    let dir = std::env::temp_dir().join(format!("eventlite-streams-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("events.sqlite");
    let mut store = Store::open(Config::new(path.to_string_lossy().into_owned())).unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    let insert = |n: i64, corr: &str| {
        for _ in 0..n {
            other.execute("INSERT INTO queue (datetime, cmd, correlation_id) VALUES (0, 'x', ?1)", [corr]).unwrap();
        }
    };
    store.append(&payload(&[("a", Some("s"), None, None, None)])).unwrap();
    insert(3, "s");
    assert_eq!(store.stream_version("s").unwrap(), 4);
    // Past the fold limit: folded on the next read, and still exact.
    insert(FOLD_LIMIT + 5, "s");
    assert_eq!(store.stream_version("s").unwrap(), FOLD_LIMIT + 9);
    let row: (i64, i64) = store
        .conn()
        .query_row("SELECT version, counted_to FROM eventlite_stream_versions WHERE correlation_id = 's'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(row, (FOLD_LIMIT + 9, FOLD_LIMIT + 9), "counted into its row");
    store
        .append_checked(&payload(&[("b", Some("s"), None, Some(FOLD_LIMIT + 9), Some("k"))]), WriteKind::Single)
        .unwrap();
    // EventLite's reset on the same file: the table dropped and made again.
    other
        .execute_batch(
            "DROP TABLE queue; CREATE TABLE queue (id INTEGER PRIMARY KEY AUTOINCREMENT, version INTEGER DEFAULT 1,
             datetime INTEGER NOT NULL, user TEXT, ip TEXT, cmd TEXT NOT NULL, data TEXT, correlation_id TEXT,
             causation_id INTEGER, metadata TEXT)",
        )
        .unwrap();
    insert(2, "s");
    assert_eq!(store.stream_version("s").unwrap(), 2, "the counts of the old log are gone");
    let again = payload(&[("b", Some("s"), None, Some(2), Some("k"))]);
    assert_eq!(store.append_checked(&again, WriteKind::Single).unwrap(), checked(3, 1, vec![]), "and so are its keys");
    drop(other);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plain_events_around_conditional_ones_go_in_by_chunks_and_count() {
    let mut store = Store::open(Config::new(MEMORY)).unwrap();
    let plain = ("p", Some("s"), None, None, None);
    let mut events = vec![plain; 40];
    events.push(("v", Some("s"), None, Some(40), None));
    events.extend(vec![plain; 70]);
    events.push(("k", Some("s"), None, Some(111), Some("key")));
    events.push(("k", Some("s"), None, None, Some("key")));
    events.push(plain);
    let done = store.append_checked(&payload(&events), WriteKind::Batch).unwrap();
    assert_eq!(done, checked(1, 113, vec![(112, 112)]));
    assert_eq!(count(&store), 113);
    assert_eq!(store.stream_version("s").unwrap(), 113);
}
