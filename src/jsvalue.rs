//! JSON values as JavaScript compares them. EventLite evaluates a wait condition's `where`
//! filter and its thresholds with JavaScript's own operators (`===`, `<`, `>=`, …) on parsed
//! JSON, so the evaluation here follows the same ECMAScript rules (IsStrictlyEqual,
//! IsLessThan, ToPrimitive, ToNumber, Number::toString): `"1500" >= 1000` holds, `null >= 0`
//! holds, `"10" < "9"` holds (two strings compare as strings), and a missing field compares
//! as `undefined`, which satisfies no relation.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

/// JavaScript's truthiness of a JSON value.
pub fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => number(n) != 0.0,
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A JSON number as JavaScript holds it: a double.
pub fn number(n: &serde_json::Number) -> f64 {
    n.as_f64().unwrap_or(f64::NAN)
}

/// `a === b`, for `a` possibly `undefined` (`None`). Two arrays or objects parsed separately
/// are never the same object, so they are never equal.
pub fn strictly_equal(a: Option<&Value>, b: &Value) -> bool {
    match (a, b) {
        (Some(Value::Null), Value::Null) => true,
        (Some(Value::Bool(x)), Value::Bool(y)) => x == y,
        (Some(Value::Number(x)), Value::Number(y)) => number(x) == number(y),
        (Some(Value::String(x)), Value::String(y)) => x == y,
        _ => false,
    }
}

/// The relational operators of a `where` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    Lt,
    Lte,
    Gt,
    Gte,
}

/// `a < b`, `a <= b`, `a > b` or `a >= b` as JavaScript evaluates it, for `a` possibly
/// `undefined` (`None`).
pub fn relates(a: Option<&Value>, relation: Relation, b: &Value) -> bool {
    let (a, b) = (to_primitive(a), to_primitive(Some(b)));
    // IsLessThan answers true, false or undefined (a NaN was involved); `<=` and `>=` are
    // "not the reverse <", and undefined makes every one of the four false.
    match relation {
        Relation::Lt => less_than(&a, &b) == Some(true),
        Relation::Gt => less_than(&b, &a) == Some(true),
        Relation::Lte => less_than(&b, &a) == Some(false),
        Relation::Gte => less_than(&a, &b) == Some(false),
    }
}

/// A JavaScript primitive: what ToPrimitive makes of a JSON value.
#[derive(Debug, PartialEq)]
enum Primitive<'a> {
    Undefined,
    Null,
    Bool(bool),
    Number(f64),
    String(Cow<'a, str>),
}

fn to_primitive(value: Option<&Value>) -> Primitive<'_> {
    match value {
        None => Primitive::Undefined,
        Some(Value::Null) => Primitive::Null,
        Some(Value::Bool(b)) => Primitive::Bool(*b),
        Some(Value::Number(n)) => Primitive::Number(number(n)),
        Some(Value::String(s)) => Primitive::String(Cow::Borrowed(s)),
        Some(other) => Primitive::String(Cow::Owned(to_string(other))),
    }
}

/// ToString of a JSON value: arrays join their elements with commas (null as empty), plain
/// objects are `[object Object]`.
fn to_string(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => number_to_string(number(n)),
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let parts: Vec<String> =
                items.iter().map(|item| if item.is_null() { String::new() } else { to_string(item) }).collect();
            parts.join(",")
        }
        Value::Object(_) => "[object Object]".into(),
    }
}

/// IsLessThan(x, y): two strings compare by UTF-16 code units, anything else as numbers;
/// `None` is JavaScript's undefined result (a NaN on either side).
fn less_than(x: &Primitive<'_>, y: &Primitive<'_>) -> Option<bool> {
    if let (Primitive::String(a), Primitive::String(b)) = (x, y) {
        return Some(a.encode_utf16().cmp(b.encode_utf16()) == Ordering::Less);
    }
    let (a, b) = (to_number(x), to_number(y));
    if a.is_nan() || b.is_nan() {
        None
    } else {
        Some(a < b)
    }
}

fn to_number(value: &Primitive<'_>) -> f64 {
    match value {
        Primitive::Undefined => f64::NAN,
        Primitive::Null => 0.0,
        Primitive::Bool(b) => f64::from(u8::from(*b)),
        Primitive::Number(n) => *n,
        Primitive::String(s) => string_to_number(s),
    }
}

/// ToNumber of a JSON value, as `n >= value` converts it (arrays through their string).
pub fn value_to_number(value: Option<&Value>) -> f64 {
    to_number(&to_primitive(value))
}

/// White space and line terminators, which StringToNumber trims.
fn is_js_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{B}' | '\u{C}' | '\r' | ' ' | '\u{A0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200A}' | '\u{2028}' | '\u{2029}' | '\u{202F}' | '\u{205F}' | '\u{3000}' | '\u{FEFF}'
    )
}

/// StringToNumber: `Number(s)` in JavaScript. Empty (or blank) is 0; `0x`, `0o` and `0b`
/// literals; `Infinity`; decimal literals with optional sign, fraction and exponent; anything
/// else is NaN (Rust's own parser also takes `inf`, `nan` and `1_0`-free forms JavaScript
/// refuses, so the grammar is checked first).
pub fn string_to_number(s: &str) -> f64 {
    let text = s.trim_matches(is_js_space);
    if text.is_empty() {
        return 0.0;
    }
    let bytes = text.as_bytes();
    if bytes.len() > 2 && bytes[0] == b'0' {
        let radix = match bytes[1] {
            b'x' | b'X' => 16,
            b'o' | b'O' => 8,
            b'b' | b'B' => 2,
            _ => 0,
        };
        if radix != 0 {
            return text[2..]
                .chars()
                .try_fold(0.0, |acc, c| c.to_digit(radix).map(|d| acc * f64::from(radix) + f64::from(d)))
                .unwrap_or(f64::NAN);
        }
    }
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    if unsigned == "Infinity" {
        return if text.starts_with('-') { f64::NEG_INFINITY } else { f64::INFINITY };
    }
    if is_decimal_literal(unsigned.as_bytes()) {
        text.parse().unwrap_or(f64::NAN)
    } else {
        f64::NAN
    }
}

/// `digits [. digits] [e [+-] digits]` or `. digits [e …]`, with a digit in the mantissa.
fn is_decimal_literal(bytes: &[u8]) -> bool {
    let digits = |from: usize| bytes[from..].iter().take_while(|b| b.is_ascii_digit()).count();
    let whole = digits(0);
    let mut at = whole;
    let mut fraction = 0;
    if bytes.get(at) == Some(&b'.') {
        fraction = digits(at + 1);
        at += 1 + fraction;
    }
    if whole + fraction == 0 {
        return false;
    }
    if matches!(bytes.get(at), Some(b'e' | b'E')) {
        at += 1;
        if matches!(bytes.get(at), Some(b'+' | b'-')) {
            at += 1;
        }
        let exponent = digits(at);
        if exponent == 0 {
            return false;
        }
        at += exponent;
    }
    at == bytes.len()
}

/// Number::toString(10): the shortest digits that round-trip (as Rust's `{:e}` gives them),
/// laid out as JavaScript does: plain decimals from 1e-7 up to 1e21, exponent form beyond.
pub fn number_to_string(x: f64) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    if x < 0.0 {
        return format!("-{}", number_to_string(-x));
    }
    if x.is_infinite() {
        return "Infinity".into();
    }
    let scientific = format!("{x:e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = digits.len() as i64;
    let n = exponent.parse::<i64>().unwrap_or(0) + 1;
    if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let sign = if e >= 0 { '+' } else { '-' };
        let (first, rest) = digits.split_at(1);
        let point = if rest.is_empty() { "" } else { "." };
        format!("{first}{point}{rest}e{sign}{}", e.abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rel(a: Value, r: Relation, b: Value) -> bool {
        relates(Some(&a), r, &b)
    }

    #[test]
    fn strict_equality_is_by_type_and_value_and_never_for_objects() {
        assert!(strictly_equal(Some(&json!(1)), &json!(1.0)));
        assert!(strictly_equal(Some(&json!("a")), &json!("a")));
        assert!(strictly_equal(Some(&json!(null)), &json!(null)));
        assert!(!strictly_equal(Some(&json!(1)), &json!("1")));
        assert!(!strictly_equal(Some(&json!(true)), &json!(1)));
        assert!(!strictly_equal(Some(&json!([1])), &json!([1])));
        assert!(!strictly_equal(Some(&json!({})), &json!({})));
        assert!(!strictly_equal(None, &json!(null)));
    }

    #[test]
    fn relations_convert_as_javascript_does() {
        assert!(rel(json!(1500), Relation::Gte, json!(1000)));
        assert!(rel(json!("1500"), Relation::Gte, json!(1000)), "a numeric string against a number");
        assert!(rel(json!("10"), Relation::Lt, json!("9")), "two strings compare as strings");
        assert!(rel(json!(null), Relation::Gte, json!(0)), "null is 0");
        assert!(!rel(json!(null), Relation::Gt, json!(0)));
        assert!(rel(json!(true), Relation::Gt, json!(0.5)));
        assert!(
            !rel(json!("abc"), Relation::Lt, json!(5)) && !rel(json!("abc"), Relation::Gte, json!(5)),
            "NaN relates to nothing"
        );
        assert!(
            !relates(None, Relation::Lte, &json!(5)) && !relates(None, Relation::Gt, &json!(5)),
            "undefined relates to nothing"
        );
        assert!(rel(json!([5]), Relation::Gt, json!(3)), "[5] becomes '5', then 5");
        assert!(rel(json!([1.5]), Relation::Gt, json!("1.4")), "two strings: '1.5' > '1.4'");
        assert!(!rel(json!({}), Relation::Gte, json!(0)), "an object becomes NaN");
        assert!(rel(json!(-0.0), Relation::Gte, json!(0)) && rel(json!(0), Relation::Lte, json!(-0.0)));
        // UTF-16 order: U+FFFD sorts after U+1F600's lead surrogate (0xD83D), unlike code points.
        assert!(rel(json!("\u{FFFD}"), Relation::Gt, json!("😀")));
    }

    #[test]
    fn string_to_number_follows_the_grammar() {
        for (text, want) in [
            ("", 0.0),
            ("  \n", 0.0),
            (" 12 ", 12.0),
            ("\u{A0}7\u{FEFF}", 7.0),
            ("+1.5e3", 1500.0),
            ("-.5", -0.5),
            ("5.", 5.0),
            ("0x1F", 31.0),
            ("0b101", 5.0),
            ("0o17", 15.0),
            ("-Infinity", f64::NEG_INFINITY),
            ("1E-2", 0.01),
        ] {
            assert_eq!(string_to_number(text), want, "{text:?}");
        }
        for text in ["abc", "1,5", "inf", "NaN", "infinity", "1e", ".", "-0x10", "0x", "1_000", "12px", "e5", "+-1"] {
            assert!(string_to_number(text).is_nan(), "{text:?}");
        }
    }

    #[test]
    fn numbers_print_as_javascript_prints_them() {
        for (x, want) in [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.5, "-1.5"),
            (123456789.0, "123456789"),
            (0.1, "0.1"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1.5e-7, "1.5e-7"),
            (0.000001, "0.000001"),
            (1.2345e25, "1.2345e+25"),
            (f64::INFINITY, "Infinity"),
        ] {
            assert_eq!(number_to_string(x), want, "{x}");
        }
    }

    #[test]
    fn truthiness() {
        for v in [json!(null), json!(false), json!(0), json!(""), json!(-0.0)] {
            assert!(!truthy(&v), "{v}");
        }
        for v in [json!(true), json!(1), json!("0"), json!([]), json!({})] {
            assert!(truthy(&v), "{v}");
        }
    }

    #[test]
    fn thresholds_convert_to_numbers() {
        assert_eq!(value_to_number(Some(&json!("3"))), 3.0);
        assert_eq!(value_to_number(Some(&json!([]))), 0.0);
        assert_eq!(value_to_number(Some(&json!([2]))), 2.0);
        assert!(value_to_number(Some(&json!([1, 2]))).is_nan());
        assert!(value_to_number(None).is_nan());
        assert_eq!(value_to_number(Some(&json!(null))), 0.0);
    }
}
