//! New events as they arrive from JavaScript: one JSON text per `store`/`storeBulk` call, an
//! array of tuples `[cmd, data, user, ip, version, correlationId, causationId, metadata,
//! datetime]`. The JavaScript layer has already validated and defaulted every field; this is
//! the second line of defence, so a malformed payload is an error, never a panic.
//!
//! Strings are borrowed from the payload where they need no unescaping, and `data` and
//! `metadata` stay [`RawValue`] slices: they are checked to be JSON and stored as the exact
//! text `JSON.stringify` produced, which is also what EventLite stores.

use std::borrow::Cow;

use serde::Deserialize;
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
    let events: Vec<NewEvent<'_>> = serde_json::from_str(payload)
        .map_err(|e| Error::InvalidEvent(format!("malformed event batch: {e}")))?;
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
