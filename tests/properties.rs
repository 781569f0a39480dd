//! Property tests of the core's validation and JSON handling: whatever the input, parsing
//! never panics, what is stored reads back byte for byte, and a refused batch changes nothing.

use eventlite_native::event::{parse_batch, parse_events, NewEvent};
use eventlite_native::read;
use eventlite_native::row::write_string;
use eventlite_native::schema::COLUMNS;
use eventlite_native::store::{Config, Store, MEMORY};
use proptest::prelude::*;
use serde_json::{json, Value};

/// serde_json reading the payload, as `src/event.rs` did before its own parser: the oracle
/// that parser must agree with.
mod reference {
    use std::borrow::Cow;

    use serde::Deserialize;
    use serde_json::value::RawValue;

    #[derive(Deserialize)]
    struct Tuple<'a>(
        #[serde(borrow)] Cow<'a, str>,
        #[serde(borrow)] &'a RawValue,
        #[serde(borrow)] Option<Cow<'a, str>>,
        #[serde(borrow)] Option<Cow<'a, str>>,
        i64,
        #[serde(borrow)] Option<Cow<'a, str>>,
        Option<i64>,
        #[serde(borrow)] &'a RawValue,
        // `null`: the datetime of the event before (none for the first).
        Option<i64>,
        // The stream conditions, which only some events carry (both, then).
        #[serde(default)] Option<i64>,
        #[serde(default, borrow)] Option<Cow<'a, str>>,
    );

    /// Each event's fields as text, or `None` when serde_json refuses the payload.
    pub fn parse(payload: &str) -> Option<Vec<String>> {
        let events: Vec<Tuple<'_>> = serde_json::from_str(payload).ok()?;
        let mut datetime = None;
        let mut fields = Vec::with_capacity(events.len());
        for e in &events {
            let at = e.8.or(datetime)?;
            datetime = Some(at);
            fields.push(format!(
                "{:?}",
                (
                    (e.0.as_ref(), e.1.get(), e.2.as_deref(), e.3.as_deref(), e.4, e.5.as_deref(), e.6, e.7.get(), at),
                    (e.9, e.10.as_deref())
                )
            ));
        }
        Some(fields)
    }
}

/// The same, read by the core's parser (`None` for an error).
fn parsed(payload: &str) -> Option<Vec<String>> {
    let fields = |e: &NewEvent<'_>| {
        format!(
            "{:?}",
            (
                (
                    e.cmd(),
                    e.data(),
                    e.user(),
                    e.ip(),
                    e.version(),
                    e.correlation_id(),
                    e.causation_id(),
                    e.metadata(),
                    e.datetime()
                ),
                (e.expected_version(), e.idempotency_key())
            )
        )
    };
    Some(parse_events(payload).ok()?.iter().map(fields).collect())
}

/// An event tuple as JavaScript sends it, with anything in its strings and JSON values.
fn event_tuple() -> impl Strategy<Value = Value> {
    (
        any::<String>(),
        json_value(),
        proptest::option::of(any::<String>()),
        proptest::option::of(any::<String>()),
        any::<i64>(),
        proptest::option::of(any::<String>()),
        proptest::option::of(any::<i64>()),
        json_value(),
        proptest::option::weighted(0.8, any::<i64>()),
        proptest::option::of((proptest::option::of(any::<i64>()), proptest::option::of(any::<String>()))),
    )
        .prop_map(|(cmd, data, user, ip, version, corr, caus, metadata, datetime, conditions)| match conditions {
            None => json!([cmd, data, user, ip, version, corr, caus, metadata, datetime]),
            Some((expected, key)) => {
                json!([cmd, data, user, ip, version, corr, caus, metadata, datetime, expected, key])
            }
        })
}

/// A batch's text: compact as `JSON.stringify` writes it, or indented; then, sometimes,
/// damaged by deleting or inserting a character somewhere.
fn payload() -> impl Strategy<Value = String> {
    damaged(prop::collection::vec(event_tuple(), 0..4).prop_map(Value::from))
}

/// Any JSON value's text, as [`payload`] writes and damages a batch.
fn json_text() -> impl Strategy<Value = String> {
    damaged(json_value())
}

/// The text of `values`, compact or indented, sometimes with a character deleted or inserted.
fn damaged(values: impl Strategy<Value = Value>) -> impl Strategy<Value = String> {
    (values, any::<bool>(), any::<Option<(prop::sample::Index, char, bool)>>()).prop_map(|(value, pretty, damage)| {
        let text = if pretty { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) };
        let mut chars: Vec<char> = text.unwrap().chars().collect();
        if let Some((at, c, insert)) = damage {
            let at = at.index(chars.len() + 1);
            if insert {
                chars.insert(at, c);
            } else if at < chars.len() {
                chars.remove(at);
            }
        }
        chars.into_iter().collect()
    })
}

/// Any JSON value of a few levels, with strings drawn from all of Unicode.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A row as the reads send it (its values in column order), keyed by column name.
fn keyed(values: Value) -> Value {
    let values = values.as_array().unwrap();
    assert_eq!(values.len(), COLUMNS.len());
    Value::Object(COLUMNS.iter().map(|c| c.to_string()).zip(values.iter().cloned()).collect())
}

fn count(store: &Store) -> i64 {
    store.conn().query_row("SELECT COUNT(*) FROM queue", [], |r| r.get(0)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsing_any_text_never_panics(text in any::<String>()) {
        if let Err(err) = parse_batch(&text) {
            prop_assert_eq!(err.code(), "ERR_INVALID_EVENT");
        }
    }

    #[test]
    fn parsing_json_shaped_noise_never_panics(noise in prop::collection::vec(json_value(), 0..4)) {
        let text = serde_json::to_string(&vec![noise]).unwrap();
        if let Err(err) = parse_batch(&text) {
            prop_assert_eq!(err.code(), "ERR_INVALID_EVENT");
        }
    }

    #[test]
    fn the_payload_parser_agrees_with_serde_json(text in payload()) {
        prop_assert_eq!(parsed(&text), reference::parse(&text), "payload {}", text);
    }

    #[test]
    fn the_json_check_agrees_with_serde_json(text in json_text()) {
        let ours = eventlite_native::json::whole(text.as_bytes()).is_ok_and(|scanned| scanned.is_some());
        let theirs = serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok();
        prop_assert_eq!(ours, theirs, "text {}", text);
    }

    #[test]
    fn json_string_literals_read_back_unchanged(s in any::<String>()) {
        let mut out = String::new();
        write_string(&mut out, &s);
        let back: String = serde_json::from_str(&out).unwrap();
        prop_assert_eq!(back, s);
    }

    #[test]
    fn stored_events_read_back_byte_for_byte(
        cmd in ".+",
        user in any::<String>(),
        ip in any::<String>(),
        correlation in any::<String>(),
        data in json_value(),
        metadata in json_value(),
        version in 1i64..1000,
        datetime in any::<i64>(),
    ) {
        let mut store = Store::open(Config::new(MEMORY)).unwrap();
        let payload = serde_json::to_string(&json!([[cmd, data, user, ip, version, correlation, null, metadata, datetime]])).unwrap();
        let id = store.append(&payload).unwrap().first_id;
        let (data_text, metadata_text): (String, String) = store.conn()
            .query_row("SELECT data, metadata FROM queue WHERE id = ?1", [id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap();
        prop_assert_eq!(data_text, serde_json::to_string(&data).unwrap());
        prop_assert_eq!(metadata_text, serde_json::to_string(&metadata).unwrap());
        let mut text = String::new();
        prop_assert!(read::write_by_id(&mut text, store.conn(), id).unwrap());
        let row = keyed(serde_json::from_str(&text).unwrap());
        prop_assert_eq!(&row["cmd"], &json!(cmd));
        prop_assert_eq!(&row["user"], &json!(user));
        prop_assert_eq!(&row["ip"], &json!(ip));
        prop_assert_eq!(&row["correlation_id"], &json!(correlation));
        prop_assert_eq!(&row["data"], &data);
        prop_assert_eq!(&row["metadata"], &metadata);
        prop_assert_eq!(&row["version"], &json!(version));
        prop_assert_eq!(&row["datetime"], &json!(datetime));
    }

    #[test]
    fn a_batch_with_one_bad_event_stores_nothing(
        good in 1usize..70,
        bad_at in 0usize..70,
        bad in prop_oneof![Just(json!(["", {}, "", "", 1, "c", null, {}, 0])), Just(json!(["x", {}, "", "", 0, "c", null, {}, 0])), Just(json!(["x"]))],
    ) {
        let mut store = Store::open(Config::new(MEMORY)).unwrap();
        store.append(r#"[["first",{},"","",1,"c",null,{},0]]"#).unwrap();
        let mut events: Vec<Value> = (0..good).map(|i| json!(["ok", {"i": i}, "", "", 1, "c", null, {}, 0])).collect();
        events.insert(bad_at.min(good), bad);
        let err = store.append(&serde_json::to_string(&events).unwrap()).unwrap_err();
        prop_assert_eq!(err.code(), "ERR_INVALID_EVENT");
        prop_assert_eq!(count(&store), 1);
    }
}
