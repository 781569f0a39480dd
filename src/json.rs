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
    scan(bytes, space(bytes, start))
}

/// Whether `bytes` hold exactly one JSON value, white space around it allowed: `Ok(None)` when
/// they hold only white space, which reads as a NULL does.
pub fn whole(bytes: &[u8]) -> Result<Option<Scanned>, Invalid> {
    let start = space(bytes, 0);
    if start == bytes.len() {
        return Ok(None);
    }
    let scanned = scan(bytes, start)?;
    let end = space(bytes, scanned.end);
    if end != bytes.len() {
        return Err(Invalid { at: end, what: "text after the JSON value" });
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

/// Bytes a string's byte-at-a-time loop stops at: the quote, the backslash, control
/// characters (which JSON forbids raw in a string) and non-ASCII (noted, then allowed). The
/// same bytes end the fast path of rendering a stored text as a JSON string (`row.rs`).
pub(crate) static STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = b < 0x20 || b == b'"' as usize || b == b'\\' as usize || b >= 0x80;
        b += 1;
    }
    table
};

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);

/// The bytes of `word` (the first in the low byte) that [`STOP`] holds, as their high bits.
/// The lowest bit set is exact, the first such byte; a byte after it may be flagged when it is
/// none, by a borrow out of the one before.
#[inline(always)]
fn stop_bits(word: u64) -> u64 {
    let below_space = word.wrapping_sub(ONES * 0x20);
    let zero_byte = |w: u64| w.wrapping_sub(ONES) & !w;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    (below_space | quote | backslash | word) & HIGHS
}

/// The index of the byte whose high bit is the lowest set in `flags` (not zero).
#[inline(always)]
fn first_flagged(flags: u64) -> usize {
    (flags.trailing_zeros() / 8) as usize
}

/// Eight bytes from `at`, the first in the low byte, while eight remain.
#[inline(always)]
fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    bytes.get(at..).and_then(<[u8]>::first_chunk::<8>).map(|eight| u64::from_le_bytes(*eight))
}

/// Where the run of plain string bytes starting at `at` ends: eight bytes at a time while
/// eight remain, the first stop byte located in its word, then one at a time.
#[inline]
fn plain(bytes: &[u8], mut at: usize) -> usize {
    while let Some(word) = word_at(bytes, at) {
        let found = stop_bits(word);
        if found != 0 {
            return at + first_flagged(found);
        }
        at += 8;
    }
    while bytes.get(at).is_some_and(|&b| !STOP[b as usize]) {
        at += 1;
    }
    at
}

#[inline]
fn space(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

fn invalid(at: usize, what: &'static str) -> Invalid {
    Invalid { at, what }
}

/// The string whose opening quote is at `at`: where it ends, and whether it is all ASCII.
#[inline(always)]
fn string(bytes: &[u8], mut at: usize) -> Result<(usize, bool), Invalid> {
    let mut ascii = true;
    at += 1;
    loop {
        at = plain(bytes, at);
        match bytes.get(at) {
            Some(b'"') => return Ok((at + 1, ascii)),
            Some(b'\\') => at = escape(bytes, at + 1)?,
            Some(0x80..=0xff) => {
                ascii = false;
                at += 1;
            }
            _ => return Err(invalid(at, "unterminated string or control character in it")),
        }
    }
}

/// The escape after a backslash, checked as JSON's grammar has it; where it ends. A `\u` escape
/// of a lone surrogate is valid JSON (`JSON.stringify` writes one for a lone surrogate).
fn escape(bytes: &[u8], at: usize) -> Result<usize, Invalid> {
    match bytes.get(at) {
        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => Ok(at + 1),
        Some(b'u') if bytes.get(at + 1..at + 5).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => Ok(at + 5),
        Some(b'u') => Err(invalid(at, "invalid \\u escape")),
        _ => Err(invalid(at, "invalid escape")),
    }
}

/// Where the run of digits from `at` ends, eight bytes at a time while eight remain.
#[inline]
fn digits(bytes: &[u8], mut at: usize) -> usize {
    while let Some(word) = word_at(bytes, at) {
        // A digit becomes 0 to 9. Adding 118 sets the high bit of a byte above 9 without a
        // carry out of a byte below 128, and `| x` flags those from 128: the lowest flag is
        // exact, the first byte that is no digit.
        let x = word ^ (ONES * u64::from(b'0'));
        let others = (x.wrapping_add(ONES * (127 - 9)) | x) & HIGHS;
        if others != 0 {
            return at + first_flagged(others);
        }
        at += 8;
    }
    while matches!(bytes.get(at), Some(b'0'..=b'9')) {
        at += 1;
    }
    at
}

/// A JSON number, `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`; where it ends.
/// Inlined: most numbers are a few digits, which a call cost as much as.
#[inline(always)]
fn number(bytes: &[u8], mut at: usize) -> Result<usize, Invalid> {
    at += usize::from(bytes.get(at) == Some(&b'-'));
    at = match bytes.get(at) {
        Some(b'0') => at + 1,
        Some(b'1'..=b'9') => digits(bytes, at + 1),
        _ => return Err(invalid(at, "invalid number")),
    };
    if bytes.get(at) == Some(&b'.') {
        let end = digits(bytes, at + 1);
        if end == at + 1 {
            return Err(invalid(end, "invalid number"));
        }
        at = end;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        at += usize::from(matches!(bytes.get(at), Some(b'+' | b'-')));
        let end = digits(bytes, at);
        if end == at {
            return Err(invalid(end, "invalid number"));
        }
        at = end;
    }
    Ok(at)
}

/// An object's key from `at` (after white space) and its colon; where the value may start.
#[inline]
fn key(bytes: &[u8], at: usize, ascii: &mut bool) -> Result<usize, Invalid> {
    let at = space(bytes, at);
    if bytes.get(at) != Some(&b'"') {
        return Err(invalid(at, "expected a string"));
    }
    let (end, plain) = string(bytes, at)?;
    *ascii &= plain;
    let colon = space(bytes, end);
    if bytes.get(colon) != Some(&b':') {
        return Err(invalid(colon, "expected `:`"));
    }
    Ok(colon + 1)
}

/// The value that starts at `at`. Most stored `data` is an object of plain values written by
/// `JSON.stringify`, which [`flat`] checks in one pass; what it leaves goes to [`nested`].
fn scan(bytes: &[u8], at: usize) -> Result<Scanned, Invalid> {
    match flat(bytes, at) {
        Flat::Whole(scanned) => Ok(scanned),
        Flat::Inner { at, ascii } => {
            let mut open = Nesting::default();
            open.push(true);
            nested(bytes, at, open, ascii)
        }
        Flat::Other => nested(bytes, at, Nesting::default(), true),
    }
}

/// How far [`flat`] got.
enum Flat {
    /// The whole value, valid.
    Whole(Scanned),
    /// A value inside the object starting at `at` (after its key and colon) is an object or an
    /// array; what came before it is valid, and `ascii` says whether it was all ASCII.
    Inner { at: usize, ascii: bool },
    /// Anything else: not an object, white space, or text that is not JSON, which [`nested`]
    /// checks again from the start to say where and why.
    Other,
}

/// An object of strings, numbers, `true`, `false` and `null` under string keys, without white
/// space, checked without a nesting stack.
#[inline]
fn flat(bytes: &[u8], mut at: usize) -> Flat {
    if bytes.get(at) != Some(&b'{') {
        return Flat::Other;
    }
    at += 1;
    let mut ascii = true;
    if bytes.get(at) == Some(&b'}') {
        return Flat::Whole(Scanned { end: at + 1, ascii });
    }
    loop {
        if bytes.get(at) != Some(&b'"') {
            return Flat::Other;
        }
        let Ok((end, plain)) = string(bytes, at) else { return Flat::Other };
        ascii &= plain;
        if bytes.get(end) != Some(&b':') {
            return Flat::Other;
        }
        at = end + 1;
        let value = match bytes.get(at) {
            Some(b'"') => string(bytes, at).map(|(end, plain)| {
                ascii &= plain;
                end
            }),
            Some(b'-' | b'0'..=b'9') => number(bytes, at),
            Some(b'{' | b'[') => return Flat::Inner { at, ascii },
            Some(b't') if bytes[at..].starts_with(b"true") => Ok(at + 4),
            Some(b'f') if bytes[at..].starts_with(b"false") => Ok(at + 5),
            Some(b'n') if bytes[at..].starts_with(b"null") => Ok(at + 4),
            _ => return Flat::Other,
        };
        let Ok(end) = value else { return Flat::Other };
        match bytes.get(end) {
            Some(b',') => at = end + 1,
            Some(b'}') => return Flat::Whole(Scanned { end: end + 1, ascii }),
            _ => return Flat::Other,
        }
    }
}

/// The value that starts at `at` inside the `open` objects and arrays (none at the top), every
/// nesting level of it on a [`Nesting`], not the stack; `ascii` says whether what came before
/// was all ASCII.
fn nested(bytes: &[u8], mut at: usize, mut open: Nesting, mut ascii: bool) -> Result<Scanned, Invalid> {
    loop {
        at = space(bytes, at);
        match bytes.get(at) {
            Some(b'"') => {
                let (end, plain) = string(bytes, at)?;
                ascii &= plain;
                at = end;
            }
            Some(b'-' | b'0'..=b'9') => at = number(bytes, at)?,
            Some(b'{') => {
                at = space(bytes, at + 1);
                if bytes.get(at) == Some(&b'}') {
                    at += 1;
                } else {
                    open.push(true);
                    at = key(bytes, at, &mut ascii)?;
                    continue;
                }
            }
            Some(b'[') => {
                at = space(bytes, at + 1);
                if bytes.get(at) == Some(&b']') {
                    at += 1;
                } else {
                    open.push(false);
                    continue;
                }
            }
            _ => {
                let literal =
                    [&b"true"[..], b"false", b"null"].into_iter().find(|l| bytes[at.min(bytes.len())..].starts_with(l));
                at += literal.ok_or_else(|| invalid(at, "expected a JSON value"))?.len();
            }
        }
        // A value ended: close what it ends, up to the next value.
        loop {
            let Some(object) = open.top() else {
                return Ok(Scanned { end: at, ascii });
            };
            at = space(bytes, at);
            match bytes.get(at) {
                Some(b',') if object => {
                    at = key(bytes, at + 1, &mut ascii)?;
                    break;
                }
                Some(b',') => {
                    at += 1;
                    break;
                }
                Some(b'}') if object => open.pop(),
                Some(b']') if !object => open.pop(),
                _ if object => return Err(invalid(at, "expected `,` or `}`")),
                _ => return Err(invalid(at, "expected `,` or `]`")),
            }
            at += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_json(text: &str) -> bool {
        whole(text.as_bytes()).is_ok_and(|s| s.is_some())
    }

    #[test]
    fn an_object_of_plain_values_and_one_with_more_inside_read_alike() {
        let cases = [
            (r#"{"a":1,"b":"x","c":true,"d":false,"e":null,"f":-1.5e3}"#, true),
            (r#"{"é":1}"#, false),
            (r#"{"a":"é"}"#, false),
            (r#"{"a":[1,{"b":2}],"c":"d"}"#, true),
            (r#"{"a":"é","b":{"c":[]}}"#, false),
            (r#"{"a":{"b":1},"c":"é"}"#, false),
            (r#"{ "a":1}"#, true),
            (r#"{"a" :1}"#, true),
        ];
        for (text, ascii) in cases {
            assert_eq!(whole(text.as_bytes()), Ok(Some(Scanned { end: text.len(), ascii })), "{text}");
        }
        // Not JSON: the same error as where the scan takes no shortcut.
        for (text, at) in
            [(r#"{"a":1,}"#, 7), (r#"{"a":[1,}"#, 8), (r#"{"a":tru}"#, 5), (r#"{"a":1"#, 6), (r#"{"a":{"b":1},}"#, 13)]
        {
            assert_eq!(whole(text.as_bytes()).map_err(|e| e.at), Err(at), "{text}");
        }
    }

    #[test]
    fn a_string_or_number_ends_where_it_ends_at_every_place_in_a_word() {
        let serde = |text: &str| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
        for n in 0..20 {
            let run = "a".repeat(n);
            let digits = "7".repeat(n + 1);
            let texts = [
                format!("[\"{run}\",1]"),
                format!("[\"{run}\\n{run}\"]"),
                format!("[\"{run}\u{1}\"]"),
                format!("[\"{run}é{run}\"]"),
                format!("[\"{run}"),
                format!("[{digits},{digits}.{digits}e-{digits}]"),
                format!("[{digits}x]"),
                format!("[{digits}é]"),
                format!("{{\"{run}\":{digits}}}"),
            ];
            for text in texts {
                assert_eq!(is_json(&text), serde(&text), "{text}");
            }
            let text = format!("[\"{run}\",{digits}]");
            assert_eq!(whole(text.as_bytes()).map(|s| s.map(|s| s.end)), Ok(Some(text.len())), "{text}");
        }
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
