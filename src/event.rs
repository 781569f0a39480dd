//! New events as they arrive from JavaScript: one JSON text per `store`/`storeBulk` call, an
//! array of tuples `[cmd, data, user, ip, version, correlationId, causationId, metadata,
//! datetime]`. The JavaScript layer has already validated and defaulted every field; this is
//! the second line of defence, so a malformed payload is an error, never a panic.
//!
//! Strings are borrowed from the payload where they need no unescaping, and `data` and
//! `metadata` stay [`RawValue`] slices: they are checked to be JSON and stored as the exact
//! text `JSON.stringify` produced, which is also what EventLite stores.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use crate::error::{Error, Result};

#[derive(Debug, Deserialize)]
pub struct NewEvent<'a>(
    #[serde(borrow)] pub Cow<'a, str>,
    #[serde(borrow)] pub &'a RawValue,
    #[serde(borrow)] pub Option<Cow<'a, str>>,
    #[serde(borrow)] pub Option<Cow<'a, str>>,
    pub i64,
    #[serde(borrow)] pub Option<Cow<'a, str>>,
    pub Option<i64>,
    #[serde(borrow)] pub &'a RawValue,
    pub i64,
);

impl<'a> NewEvent<'a> {
    pub fn cmd(&self) -> &str {
        &self.0
    }
    pub fn data(&self) -> &str {
        self.1.get()
    }
    pub fn user(&self) -> Option<&str> {
        self.2.as_deref()
    }
    pub fn ip(&self) -> Option<&str> {
        self.3.as_deref()
    }
    pub fn version(&self) -> i64 {
        self.4
    }
    pub fn correlation_id(&self) -> Option<&str> {
        self.5.as_deref()
    }
    pub fn causation_id(&self) -> Option<i64> {
        self.6
    }
    pub fn metadata(&self) -> &str {
        self.7.get()
    }
    pub fn datetime(&self) -> i64 {
        self.8
    }
}

/// Parses a batch and checks what the table requires of each event.
pub fn parse_batch(payload: &str) -> Result<Vec<NewEvent<'_>>> {
    let malformed = |e: serde_json::Error| Error::InvalidEvent(format!("malformed event batch: {e}"));
    let mut de = serde_json::Deserializer::from_str(payload);
    let events = Events { capacity: payload.len() / BYTES_PER_EVENT }.deserialize(&mut de).map_err(malformed)?;
    de.end().map_err(malformed)?;
    if events.is_empty() {
        return Err(Error::InvalidEvent("an event batch must not be empty".into()));
    }
    for (index, event) in events.iter().enumerate() {
        if event.cmd().is_empty() {
            return Err(Error::InvalidEvent(format!("event {index}: cmd must not be empty")));
        }
        if event.version() < 1 {
            return Err(Error::InvalidEvent(format!(
                "event {index}: version must be a positive integer, got {}",
                event.version()
            )));
        }
    }
    Ok(events)
}

/// A little less than the payload text of a typical event, to size the vector of a batch.
const BYTES_PER_EVENT: usize = 96;

/// The events of a batch, in a vector sized from the payload's length up front. Grown a
/// doubling at a time, it was copied over and over: the tuples of 1,000 events take 160 KB,
/// past what malloc keeps at hand, and that was a third of the parse (measured: 275 -> ns an
/// event).
struct Events {
    capacity: usize,
}

impl<'de> DeserializeSeed<'de> for Events {
    type Value = Vec<NewEvent<'de>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> std::result::Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Events {
    type Value = Vec<NewEvent<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of event tuples")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<Self::Value, A::Error> {
        let mut events = Vec::with_capacity(self.capacity);
        while let Some(event) = seq.next_element()? {
            events.push(event);
        }
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_and_metadata_keep_their_exact_text() {
        let payload = r#"[["go",{"b":1,"a":[true,null]},"u","1.2.3.4",2,"c",7,{"k":"v"},1700]]"#;
        let events = parse_batch(payload).unwrap();
        let e = &events[0];
        assert_eq!(e.cmd(), "go");
        assert_eq!(e.data(), r#"{"b":1,"a":[true,null]}"#);
        assert_eq!(e.metadata(), r#"{"k":"v"}"#);
        assert_eq!((e.user(), e.ip()), (Some("u"), Some("1.2.3.4")));
        assert_eq!((e.version(), e.correlation_id(), e.causation_id(), e.datetime()), (2, Some("c"), Some(7), 1700));
    }

    #[test]
    fn escaped_strings_are_unescaped_and_nulls_allowed() {
        let payload = r#"[["a\"b",null,null,null,1,null,null,null,0]]"#;
        let events = parse_batch(payload).unwrap();
        assert_eq!(events[0].cmd(), "a\"b");
        assert_eq!(events[0].data(), "null");
        assert_eq!(events[0].user(), None);
    }

    #[test]
    fn malformed_payloads_are_invalid_events_not_panics() {
        for bad in [
            "",
            "{}",
            "[]",
            "[[]]",
            r#"[["a",{},"u","i",1,null,null,{}]]"#,
            r#"[["",{},"u","i",1,null,null,{},0]]"#,
            r#"[["a",{},"u","i",0,null,null,{},0]]"#,
            r#"[["a",{},"u","i",1.5,null,null,{},0]]"#,
            r#"[["a",{"x":},"u","i",1,null,null,{},0]]"#,
            r#"[[1,{},"u","i",1,null,null,{},0]]"#,
        ] {
            let err = parse_batch(bad).unwrap_err();
            assert_eq!(err.code(), "ERR_INVALID_EVENT", "{bad}");
        }
    }
}
