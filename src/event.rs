//! New events as they arrive from JavaScript: one JSON text per `store`/`storeBulk` call, an
//! array of tuples `[cmd, data, user, ip, version, correlationId, causationId, metadata,
//! datetime]`, to which an event that carries either of the stream conditions adds
//! `expectedVersion, idempotencyKey` (each `null` when absent; see [`crate::version`] and
//! [`crate::idempotency`]): events without them are sent exactly as before. A `datetime` of
//! `null` is the datetime of the event before it in the payload: the events of a batch are
//! mostly stamped in the same millisecond, and writing a 13-digit number a thousand times was
//! a quarter of the time `JSON.stringify` spends on a batch. The JavaScript layer has already
//! validated and defaulted every field; this is the second line of defence, so a malformed
//! payload is an error, never a panic.
//!
//! Strings are borrowed from the payload where they need no unescaping, and `data` and
//! `metadata` stay slices of it: they are checked to be JSON and stored as the exact text
//! `JSON.stringify` produced, which is also what EventLite stores.

use std::borrow::Cow;
use std::ops::Range;

use crate::error::{Error, Result};
use crate::json;

/// One event of a batch, its strings borrowed from the payload where they need no unescaping.
#[derive(Debug)]
pub struct NewEvent<'a> {
    cmd: Cow<'a, str>,
    data: &'a str,
    user: Option<Cow<'a, str>>,
    ip: Option<Cow<'a, str>>,
    version: i64,
    correlation_id: Option<Cow<'a, str>>,
    causation_id: Option<i64>,
    metadata: &'a str,
    datetime: i64,
    expected_version: Option<i64>,
    idempotency_key: Option<Cow<'a, str>>,
}

impl<'a> NewEvent<'a> {
    pub fn cmd(&self) -> &str {
        &self.cmd
    }
    pub fn data(&self) -> &'a str {
        self.data
    }
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
    pub fn ip(&self) -> Option<&str> {
        self.ip.as_deref()
    }
    pub fn version(&self) -> i64 {
        self.version
    }
    pub fn correlation_id(&self) -> Option<&str> {
        self.correlation_id.as_deref()
    }
    pub fn causation_id(&self) -> Option<i64> {
        self.causation_id
    }
    pub fn metadata(&self) -> &'a str {
        self.metadata
    }
    pub fn datetime(&self) -> i64 {
        self.datetime
    }
    /// The version its stream must be at for it to be appended.
    pub fn expected_version(&self) -> Option<i64> {
        self.expected_version
    }
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }
    /// Whether it carries a stream condition, which only [`crate::store::Store::append_checked`]
    /// and a group commit ([`crate::writer`]) honour.
    pub fn is_conditional(&self) -> bool {
        self.expected_version.is_some() || self.idempotency_key.is_some()
    }
}

/// A stretch of a call's events, as a write with stream conditions takes them
/// ([`conditional_parts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    /// Events without conditions, which go in together, as the plain path puts them.
    Plain(Range<usize>),
    /// One event with a condition, checked and stored on its own.
    Conditional(usize),
}

/// `events` in order, as stretches of plain events and single conditional ones: each check
/// then counts every event before it, which went in first. Both backends write this way.
pub fn conditional_parts<'a, 'e>(events: &'a [NewEvent<'e>]) -> Parts<'a, 'e> {
    Parts { events, at: 0 }
}

/// The iterator of [`conditional_parts`].
pub struct Parts<'a, 'e> {
    events: &'a [NewEvent<'e>],
    at: usize,
}

impl Iterator for Parts<'_, '_> {
    type Item = Part;

    fn next(&mut self) -> Option<Part> {
        let start = self.at;
        let plain = self.events[start..].iter().take_while(|e| !e.is_conditional()).count();
        if plain > 0 {
            self.at += plain;
            return Some(Part::Plain(start..self.at));
        }
        (start < self.events.len()).then(|| {
            self.at += 1;
            Part::Conditional(start)
        })
    }
}

/// Parses a batch and checks what the table requires of each event.
pub fn parse_batch(payload: &str) -> Result<Vec<NewEvent<'_>>> {
    let events = parse_events(payload)?;
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
        if let Some(expected) = event.expected_version().filter(|v| *v < 0) {
            return Err(Error::InvalidEvent(format!(
                "event {index}: expectedVersion must be an integer >= 0, got {expected}"
            )));
        }
        if let Some(key) = event.idempotency_key() {
            crate::idempotency::check_key(key).map_err(|why| Error::InvalidEvent(format!("event {index}: {why}")))?;
        }
    }
    Ok(events)
}

/// The events of a payload as written: checked to have the payload's shape, not yet against
/// what the table requires (see [`parse_batch`]).
pub fn parse_events(payload: &str) -> Result<Vec<NewEvent<'_>>> {
    Parser { text: payload, at: 0 }.batch()
}

/// A little less than the payload text of a typical event, to size the vector of a batch.
const BYTES_PER_EVENT: usize = 96;

/// A parser of exactly the payload's shape, written out instead of serde_json's generic
/// machinery (sequence visitors, a tuple struct, `RawValue`), which took about three quarters
/// longer an event and was a good part of storing a batch. `data` and
/// `metadata` are still checked to be JSON, every string is checked and unescaped as JSON says,
/// and anything else is an error that says where. `tests/properties.rs` checks that it reads
/// every payload exactly as serde_json does.
struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Parser<'a> {
    fn batch(mut self) -> Result<Vec<NewEvent<'a>>> {
        let mut events = Vec::with_capacity(self.text.len() / BYTES_PER_EVENT);
        self.expect(b'[')?;
        if !self.eat(b']') {
            loop {
                let event = self.event(events.last().map(NewEvent::datetime))?;
                events.push(event);
                if self.eat(b']') {
                    break;
                }
                self.expect(b',')?;
            }
        }
        self.space();
        if self.at != self.text.len() {
            return Err(self.error("text after the batch"));
        }
        Ok(events)
    }

    /// `[cmd, data, user, ip, version, correlationId, causationId, metadata, datetime]`, and
    /// optionally `expectedVersion, idempotencyKey` after it; `previous` is the datetime of
    /// the event before it, which a `null` datetime stands for.
    fn event(&mut self, previous: Option<i64>) -> Result<NewEvent<'a>> {
        self.expect(b'[')?;
        let cmd = self.string()?;
        let data = self.then(Self::raw)?;
        let user = self.then(|p| p.nullable(Self::string))?;
        let ip = self.then(|p| p.nullable(Self::string))?;
        let version = self.then(Self::integer)?;
        let correlation_id = self.then(|p| p.nullable(Self::string))?;
        let causation_id = self.then(|p| p.nullable(Self::integer))?;
        let metadata = self.then(Self::raw)?;
        let datetime = match self.then(|p| p.nullable(Self::integer))?.or(previous) {
            Some(datetime) => datetime,
            None => return Err(self.error("a null datetime on the first event, which has none before it to repeat")),
        };
        let (expected_version, idempotency_key) = if self.eat(b',') {
            (self.nullable(Self::integer)?, self.then(|p| p.nullable(Self::string))?)
        } else {
            (None, None)
        };
        self.expect(b']')?;
        Ok(NewEvent {
            cmd,
            data,
            user,
            ip,
            version,
            correlation_id,
            causation_id,
            metadata,
            datetime,
            expected_version,
            idempotency_key,
        })
    }

    /// The next field of a tuple: a comma, then what `field` reads.
    #[inline]
    fn then<T>(&mut self, field: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.expect(b',')?;
        field(self)
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Skips white space, then `byte` if it comes next.
    #[inline]
    fn eat(&mut self, byte: u8) -> bool {
        // `JSON.stringify` writes no white space: look for the byte first.
        if self.peek() != Some(byte) {
            self.space();
            if self.peek() != Some(byte) {
                return false;
            }
        }
        self.at += 1;
        true
    }

    #[inline]
    fn expect(&mut self, byte: u8) -> Result<()> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", byte as char)))
        }
    }

    fn error(&self, what: &str) -> Error {
        Error::InvalidEvent(format!("malformed event batch: {what} at byte {}", self.at))
    }

    #[inline]
    fn nullable<T>(&mut self, value: impl FnOnce(&mut Self) -> Result<T>) -> Result<Option<T>> {
        self.space();
        if self.bytes()[self.at..].starts_with(b"null") {
            self.at += 4;
            Ok(None)
        } else {
            value(self).map(Some)
        }
    }

    /// A JSON integer that fits an `i64`.
    fn integer(&mut self) -> Result<i64> {
        self.space();
        let negative = self.peek() == Some(b'-');
        self.at += usize::from(negative);
        let first = self.peek();
        // Accumulated negative, whose range holds i64::MIN too.
        let mut value: i64 = 0;
        let mut digits = 0;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            let next = value.checked_mul(10).and_then(|v| v.checked_sub(i64::from(digit - b'0')));
            value = next.ok_or_else(|| self.error("integer out of range"))?;
            digits += 1;
            self.at += 1;
        }
        if digits == 0 || (first == Some(b'0') && digits > 1) || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return Err(self.error("expected an integer"));
        }
        if negative {
            Ok(value)
        } else {
            value.checked_neg().ok_or_else(|| self.error("integer out of range"))
        }
    }

    /// A JSON string, unescaped: borrowed from the payload when it holds no escape.
    fn string(&mut self) -> Result<Cow<'a, str>> {
        self.space();
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a string"));
        }
        self.at += 1;
        let start = self.at;
        let bytes = self.bytes();
        loop {
            match bytes.get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Cow::Borrowed(&self.text[start..self.at - 1]));
                }
                Some(b'\\') => break,
                Some(0x00..=0x1f) | None => return Err(self.error("unterminated string or control character in it")),
                Some(_) => self.at += 1,
            }
        }
        let mut owned = String::from(&self.text[start..self.at]);
        loop {
            match bytes.get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(Cow::Owned(owned));
                }
                Some(b'\\') => {
                    self.at += 1;
                    owned.push(self.escape()?);
                }
                Some(0x00..=0x1f) | None => return Err(self.error("unterminated string or control character in it")),
                Some(_) => {
                    // Copy the run up to the next quote or backslash at once.
                    let run = bytes[self.at..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
                    let end = run.map_or(bytes.len(), |n| self.at + n);
                    owned.push_str(&self.text[self.at..end]);
                    self.at = end;
                }
            }
        }
    }

    /// The character of the escape after a backslash.
    fn escape(&mut self) -> Result<char> {
        let byte = self.peek().ok_or_else(|| self.error("unterminated escape"))?;
        self.at += 1;
        Ok(match byte {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let unit = self.hex4()?;
                let code = match unit {
                    0xd800..=0xdbff if self.bytes()[self.at..].starts_with(b"\\u") => {
                        self.at += 2;
                        let low = self.hex4()?;
                        if !(0xdc00..=0xdfff).contains(&low) {
                            return Err(self.error("lone surrogate in a string"));
                        }
                        0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)
                    }
                    _ => unit,
                };
                char::from_u32(code).ok_or_else(|| self.error("lone surrogate in a string"))?
            }
            _ => return Err(self.error("invalid escape")),
        })
    }

    fn hex4(&mut self) -> Result<u32> {
        let hex = self.bytes().get(self.at..self.at + 4).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        let hex = hex.ok_or_else(|| self.error("invalid \\u escape"))?;
        let unit = hex.iter().fold(0, |unit, &b| unit * 16 + (b as char).to_digit(16).unwrap_or(0));
        self.at += 4;
        Ok(unit)
    }

    /// Any JSON value, checked (see [`crate::json`], which has no limit on nesting) and returned
    /// as the exact text it was given as.
    fn raw(&mut self) -> Result<&'a str> {
        self.space();
        let start = self.at;
        match json::value(self.bytes(), start) {
            Ok(scanned) => {
                self.at = scanned.end;
                Ok(&self.text[start..self.at])
            }
            Err(invalid) => {
                self.at = invalid.at;
                Err(self.error(invalid.what))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_events_stand_alone_between_stretches_of_plain_ones() {
        let plain = r#"["p",{},"","",1,"c",null,{},1]"#;
        let versioned = r#"["v",{},"","",1,"c",null,{},1,0,null]"#;
        let keyed = r#"["k",{},"","",1,"c",null,{},1,null,"key"]"#;
        let payload = format!("[{plain},{plain},{versioned},{keyed},{plain}]");
        let events = parse_batch(&payload).unwrap();
        let parts: Vec<Part> = conditional_parts(&events).collect();
        assert_eq!(parts, [Part::Plain(0..2), Part::Conditional(2), Part::Conditional(3), Part::Plain(4..5)]);
        assert_eq!(conditional_parts(&[]).count(), 0);
    }

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
    fn a_null_datetime_repeats_the_one_before_it() {
        let payload = r#"[["a",{},"","",1,"c",null,{},1700],["b",{},"","",1,"c",null,{},null],["c",{},"","",1,"c",null,{},-3],["d",{},"","",1,"c",null,{},null,null,"k"]]"#;
        let datetimes: Vec<i64> = parse_batch(payload).unwrap().iter().map(NewEvent::datetime).collect();
        assert_eq!(datetimes, [1700, 1700, -3, -3]);
        let first = parse_batch(r#"[["a",{},"","",1,"c",null,{},null],["b",{},"","",1,"c",null,{},1]]"#).unwrap_err();
        assert_eq!(first.code(), "ERR_INVALID_EVENT");
        assert!(first.to_string().contains("first event"), "{first}");
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
    fn escapes_decode_as_json_says_and_data_keeps_them_as_written() {
        let payload =
            r#" [ [ "\ud83d\ude00\u00e9\/\b\f\n\r\t" , {"s":"\ud800"} , "u" , null , 1 , null , null , { } , -5 ] ] "#;
        let events = parse_batch(payload).unwrap();
        assert_eq!(events[0].cmd(), "😀é/\u{8}\u{c}\n\r\t");
        // JSON.stringify writes a lone surrogate as an escape: valid JSON, stored as written.
        assert_eq!(events[0].data(), r#"{"s":"\ud800"}"#);
        assert_eq!((events[0].metadata(), events[0].datetime()), ("{ }", -5));
    }

    #[test]
    fn data_nests_as_deep_as_it_likes() {
        let nested =
            |depth: usize| format!(r#"[["a",{}1{},"u","i",1,null,null,{{}},0]]"#, "[".repeat(depth), "]".repeat(depth));
        for depth in [128, 129, 10_000, 1_000_000] {
            let payload = nested(depth);
            assert_eq!(parse_batch(&payload).unwrap()[0].data().len(), 2 * depth + 1);
        }
        assert_eq!(parse_batch(&nested(10_000).replacen(']', "", 1)).unwrap_err().code(), "ERR_INVALID_EVENT");
    }

    #[test]
    fn stream_conditions_follow_the_nine_fields_when_given() {
        let events =
            parse_batch(r#"[["a",{},"u","i",1,"c",null,{},0,3,"k\u0031"],["b",{},"u","i",1,"c",null,{},0]]"#).unwrap();
        assert_eq!((events[0].expected_version(), events[0].idempotency_key()), (Some(3), Some("k1")));
        assert!(events[0].is_conditional());
        assert_eq!((events[1].expected_version(), events[1].idempotency_key()), (None, None));
        assert!(!events[1].is_conditional());
        let key_only = parse_batch(r#"[["a",{},"u","i",1,null,null,{},0,null,"k"]]"#).unwrap();
        assert_eq!((key_only[0].expected_version(), key_only[0].idempotency_key()), (None, Some("k")));
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
            r#"[["\ud800",{},"u","i",1,null,null,{},0]]"#,
            r#"[["\ud800\u0041",{},"u","i",1,null,null,{},0]]"#,
            r#"[["\x",{},"u","i",1,null,null,{},0]]"#,
            r#"[["a",{},"u","i",01,null,null,{},0]]"#,
            r#"[["a",{},"u","i",1,null,null,{},0]] x"#,
            r#"[["a",{},"u","i",1,null,null,{},0],]"#,
            r#"[["a",{"k" 1},"u","i",1,null,null,{},0]]"#,
            r#"[["a",[1,],"u","i",1,null,null,{},0]]"#,
            r#"[["a",-,"u","i",1,null,null,{},0]]"#,
            r#"[["a",1.,"u","i",1,null,null,{},0]]"#,
            r#"[["a",1e,"u","i",1,null,null,{},0]]"#,
            r#"[["a",tru,"u","i",1,null,null,{},0]]"#,
            r#"[["a",{},"u","i",99999999999999999999,null,null,{},0]]"#,
            "[[\"a\u{1}\",{},\"u\",\"i\",1,null,null,{},0]]",
            r#"[["a",{},"u","i",1,"c",null,{},0,1]]"#,
            r#"[["a",{},"u","i",1,"c",null,{},0,-1,null]]"#,
            r#"[["a",{},"u","i",1,"c",null,{},0,1.5,null]]"#,
            r#"[["a",{},"u","i",1,"c",null,{},0,null,""]]"#,
            r#"[["a",{},"u","i",1,"c",null,{},0,null,7]]"#,
            r#"[["a",{},"u","i",1,"c",null,{},0,null,null,null]]"#,
        ] {
            let err = parse_batch(bad).unwrap_err();
            assert_eq!(err.code(), "ERR_INVALID_EVENT", "{bad}");
        }
    }
}
