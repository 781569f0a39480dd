//! Checking that text is JSON, without building anything: the payload parser checks `data` and
//! `metadata` on the way in (`src/event.rs`), and the reads check the stored text on the way out
//! (`src/row.rs`), since a file written by another program may hold anything there.
//!
//! The scan keeps its nesting on an explicit stack of bits, one per open object or array, not
//! on the native stack: any depth that `JSON.stringify` can produce (Bun's reaches 40,000, and
//! text written by another program has no bound at all) costs one bit a level, never a frame.

/// Where and why text is not JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid {
    pub at: usize,
    pub what: &'static str,
}

/// What a successful scan learnt on the way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scanned {
    /// Where the value ends.
    pub end: usize,
    /// Whether every byte of it is ASCII, so that it is UTF-8 without checking further.
    pub ascii: bool,
}

/// Scans the one JSON value that starts at `start` (after white space).
pub fn value(bytes: &[u8], start: usize) -> Result<Scanned, Invalid> {
    Scan { bytes, at: start, ascii: true, open: Nesting::default() }.value()
}

/// Whether `bytes` hold exactly one JSON value, white space around it allowed: `Ok(None)` when
/// they hold only white space, which reads as a NULL does.
pub fn whole(bytes: &[u8]) -> Result<Option<Scanned>, Invalid> {
    let mut scan = Scan { bytes, at: 0, ascii: true, open: Nesting::default() };
    scan.space();
    if scan.at == bytes.len() {
        return Ok(None);
    }
    let scanned = scan.value()?;
    scan.space();
    if scan.at != bytes.len() {
        return Err(scan.invalid("text after the JSON value"));
    }
    Ok(Some(scanned))
}

/// The open objects and arrays, innermost last, a bit each (1 for an object). The first 128
/// levels live inline, so that the usual shallow value allocates nothing.
#[derive(Default)]
struct Nesting {
    depth: usize,
    inline: [u64; 2],
    deeper: Vec<u64>,
}

impl Nesting {
    fn push(&mut self, object: bool) {
        let (word, bit) = (self.depth / 64, self.depth % 64);
        let slot = match self.inline.get_mut(word) {
            Some(slot) => slot,
            None => {
                let index = word - self.inline.len();
                if index == self.deeper.len() {
                    self.deeper.push(0);
                }
                &mut self.deeper[index]
            }
        };
        *slot = (*slot & !(1 << bit)) | (u64::from(object) << bit);
        self.depth += 1;
    }

    /// Whether the innermost open value is an object; `None` at the top level.
    fn top(&self) -> Option<bool> {
        let depth = self.depth.checked_sub(1)?;
        let (word, bit) = (depth / 64, depth % 64);
        let slot = match self.inline.get(word) {
            Some(slot) => *slot,
            None => self.deeper[word - self.inline.len()],
        };
        Some(slot >> bit & 1 == 1)
    }

    fn pop(&mut self) {
        self.depth -= 1;
    }
}

/// Bytes a string's fast loop stops at: the quote, the backslash, control characters (which
/// JSON forbids raw in a string) and non-ASCII (noted, then allowed).
static STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize || b >= 0x80;
        b += 1;
    }
    table
};

struct Scan<'a> {
    bytes: &'a [u8],
    at: usize,
    ascii: bool,
    open: Nesting,
}

impl Scan<'_> {
    fn invalid(&self, what: &'static str) -> Invalid {
        Invalid { at: self.at, what }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// Skips white space, then `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        self.space();
        let found = self.peek() == Some(byte);
        self.at += usize::from(found);
        found
    }

    /// An object's key and its colon; the value follows.
    fn key(&mut self) -> Result<(), Invalid> {
        self.space();
        if self.peek() != Some(b'"') {
            return Err(self.invalid("expected a string"));
        }
        self.string()?;
        if !self.eat(b':') {
            return Err(self.invalid("expected `:`"));
        }
        Ok(())
    }

    fn value(&mut self) -> Result<Scanned, Invalid> {
        loop {
            self.space();
            match self.peek() {
                Some(b'{') => {
                    self.at += 1;
                    if !self.eat(b'}') {
                        self.open.push(true);
                        self.key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.at += 1;
                    if !self.eat(b']') {
                        self.open.push(false);
                        continue;
                    }
                }
                Some(b'"') => self.string()?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                _ => self.literal()?,
            }
            // A value ended: close what it ends, up to the next one.
            loop {
                let Some(object) = self.open.top() else {
                    return Ok(Scanned { end: self.at, ascii: self.ascii });
                };
                self.space();
                match self.peek() {
                    Some(b',') => {
                        self.at += 1;
                        if object {
                            self.key()?;
                        }
                        break;
                    }
                    Some(b'}') if object => {}
                    Some(b']') if !object => {}
                    _ => return Err(self.invalid(if object { "expected `,` or `}`" } else { "expected `,` or `]`" })),
                }
                self.at += 1;
                self.open.pop();
            }
        }
    }

    fn literal(&mut self) -> Result<(), Invalid> {
        for literal in [&b"true"[..], b"false", b"null"] {
            if self.bytes[self.at..].starts_with(literal) {
                self.at += literal.len();
                return Ok(());
            }
        }
        Err(self.invalid("expected a JSON value"))
    }

    /// A string, from its opening quote: checked, not unescaped.
    fn string(&mut self) -> Result<(), Invalid> {
        self.at += 1;
        loop {
            while self.bytes.get(self.at).is_some_and(|&b| !STOP[b as usize]) {
                self.at += 1;
            }
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.at += 1;
                    self.escape()?;
                }
                Some(0x80..=0xff) => {
                    self.ascii = false;
                    self.at += 1;
                }
                _ => return Err(self.invalid("unterminated string or control character in it")),
            }
        }
    }

    /// An escape after a backslash, checked as JSON's grammar has it. A `\u` escape of a lone
    /// surrogate is valid JSON (`JSON.stringify` writes one for a lone surrogate in a string).
    fn escape(&mut self) -> Result<(), Invalid> {
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.at += 1,
            Some(b'u')
                if self.bytes.get(self.at + 1..self.at + 5).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
            {
                self.at += 5
            }
            Some(b'u') => return Err(self.invalid("invalid \\u escape")),
            _ => return Err(self.invalid("invalid escape")),
        }
        Ok(())
    }

    fn digits(&mut self) -> usize {
        let start = self.at;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.at += 1;
        }
        self.at - start
    }

    /// A JSON number: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    fn number(&mut self) -> Result<(), Invalid> {
        self.at += usize::from(self.peek() == Some(b'-'));
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.invalid("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            if self.digits() == 0 {
                return Err(self.invalid("invalid number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.at += 1;
            self.at += usize::from(matches!(self.peek(), Some(b'+' | b'-')));
            if self.digits() == 0 {
                return Err(self.invalid("invalid number"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_json(text: &str) -> bool {
        whole(text.as_bytes()).is_ok_and(|s| s.is_some())
    }

    #[test]
    fn accepts_exactly_what_serde_json_accepts() {
        for text in [
            "0",
            "-0",
            "1.5e+3",
            "-12.0E-1",
            "true",
            "false",
            "null",
            r#""""#,
            r#""\u00e9\ud800\/\b""#,
            "[]",
            "{}",
            " [ 1 , { \"a\" : [ ] } ] ",
            r#"{"a":{"b":{"c":[1,[2,[3]]]}}}"#,
            "\"é😀\"",
            "[\"\u{7f}\"]",
            // Not JSON:
            "",
            " ",
            "{",
            "[1,]",
            "[1 2]",
            "{\"a\"}",
            "{\"a\":1,}",
            "{1:2}",
            "01",
            "1.",
            "1e",
            "-",
            ".5",
            "+1",
            "tru",
            "nul",
            "[}",
            "{]",
            "\"a",
            "\"\\x\"",
            "\"\\u12\"",
            "\"tab\tinside\"",
            "{} {}",
            "1 2",
            "[1]]",
            "NaN",
            "{\"amount\":2},\"acct\",null,{}, 999",
            "hello world",
            "'single'",
        ] {
            let expected = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
            assert_eq!(is_json(text), expected, "{text:?}");
        }
        assert!(is_json("\"a\u{80}\u{ff}b\""), "non-ASCII inside a string");
    }

    #[test]
    fn notes_whether_the_value_is_ascii() {
        assert_eq!(whole(br#"{"a":"b"}"#), Ok(Some(Scanned { end: 9, ascii: true })));
        assert_eq!(whole("[\"é\"]".as_bytes()).map(|s| s.map(|s| s.ascii)), Ok(Some(false)));
        assert_eq!(whole(b" \n\t"), Ok(None));
    }

    #[test]
    fn a_value_is_scanned_where_it_starts_and_ends_where_it_ends() {
        let text = br#"[1,{"a":[2]} ,3]"#;
        assert_eq!(value(text, 3).map(|s| s.end), Ok(12));
        assert_eq!(value(b"[1,]", 0), Err(Invalid { at: 3, what: "expected a JSON value" }));
    }

    #[test]
    fn any_depth_is_scanned_without_recursion() {
        // A million levels would overflow any native stack if each took a frame.
        for depth in [1, 63, 64, 65, 127, 128, 129, 10_000, 1_000_000] {
            let arrays = format!("{}1{}", "[".repeat(depth), "]".repeat(depth));
            assert!(is_json(&arrays), "{depth}");
            let objects = format!("{}1{}", "{\"a\":".repeat(depth), "}".repeat(depth));
            assert!(is_json(&objects), "{depth}");
            assert!(!is_json(&arrays[1..]), "{depth}: one bracket too many");
            let mixed: String = (0..depth).map(|i| if i % 3 == 0 { "{\"k\":" } else { "[" }).collect();
            let closing: String = (0..depth).rev().map(|i| if i % 3 == 0 { "}" } else { "]" }).collect();
            assert!(is_json(&format!("{mixed}null{closing}")), "{depth}");
            assert!(!is_json(&format!("{mixed}null{closing}]")), "{depth}: one bracket too many");
        }
    }
}
