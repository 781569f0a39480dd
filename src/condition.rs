//! One wait condition of a pending event (see [`crate::pending`]), evaluated where it is
//! cheapest: one count in SQLite over the indexed columns (`correlation_id`, and `cmd` when the
//! condition names a pattern), with the `where` filter applied to `data` inside the same
//! statement by the SQL function [`WHERE_FUNCTION`]. The count stops at the threshold
//! (`LIMIT`), so a condition over a long transaction reads only the rows it needs; no row ever
//! crosses to JavaScript.
//!
//! The rules are EventLite's, which evaluates conditions in JavaScript on the parsed
//! `condition_data`: a condition without a (truthy) `correlationId` is never satisfied; a
//! truthy `pattern` must equal `cmd`; a truthy `where` maps top-level `data` fields to a value
//! (`===`) or to operators (`$eq $ne $gt $gte $lt $lte`, all must hold, any other never
//! matches), compared as JavaScript compares ([`crate::jsvalue`]); the matching events must
//! number at least `minCount` (default 1), or `count` for the `count` group.

use std::borrow::Cow;

use once_cell::sync::Lazy;
use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;
use rusqlite::ToSql;
use serde_json::Value;

use crate::connection::Connection;
use crate::error::Result;
use crate::jsvalue::{number, number_to_string, relates, strictly_equal, truthy, value_to_number, Relation};

/// The SQL function `eventlite_where(data, where)`: 1 when the JSON text `data` matches the
/// JSON text `where`, else 0. Registered on the store's connection by [`register`].
pub const WHERE_FUNCTION: &str = "eventlite_where";

/// The groups of a `waitFor`, in the order EventLite stores their conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    All,
    Any,
    Count,
    Sequence,
}

impl Group {
    pub const ALL: [Group; 4] = [Group::All, Group::Any, Group::Count, Group::Sequence];

    /// The group's key in `waitFor`.
    pub fn key(self) -> &'static str {
        match self {
            Group::All => "all",
            Group::Any => "any",
            Group::Count => "count",
            Group::Sequence => "sequence",
        }
    }

    /// The `condition_type` of the group's rows in `wait_conditions`.
    pub fn condition_type(self) -> &'static str {
        match self {
            Group::All => "all_condition",
            Group::Any => "any_condition",
            Group::Count => "count_condition",
            Group::Sequence => "sequence_condition",
        }
    }

    pub fn of_condition_type(name: &str) -> Option<Group> {
        Group::ALL.into_iter().find(|g| g.condition_type() == name)
    }
}

/// The correlation id a condition counts events of, when it has one EventLite would query by:
/// a non-empty string, or a number or `true` as SQLite compares them with the text column.
pub fn correlation_of(condition: &Value) -> Option<String> {
    match condition.get("correlationId")? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) if number(n) != 0.0 => {
            Some(n.as_i64().map_or_else(|| number_to_string(number(n)), |i| i.to_string()))
        }
        Value::Bool(true) => Some("1".into()),
        _ => None,
    }
}

/// Whether the log holds enough events matching the condition (`condition_data` parsed) of
/// `group`. Sequence order is the caller's business: this is one condition on its own.
pub fn is_met(conn: &Connection, group: Group, condition: &Value) -> Result<bool> {
    let Some(correlation_id) = correlation_of(condition) else { return Ok(false) };
    let threshold = match (group, condition.get(if group == Group::Count { "count" } else { "minCount" })) {
        // `minCount = 1` is a destructuring default: it applies to a missing key only.
        (Group::All | Group::Any | Group::Sequence, None) => 1.0,
        (_, found) => value_to_number(found),
    };
    if threshold.is_nan() {
        return Ok(false);
    }
    if threshold <= 0.0 {
        return Ok(true);
    }
    let cmd = match condition.get("pattern") {
        Some(pattern) if truthy(pattern) => match pattern {
            Value::String(cmd) => Some(cmd.as_str()),
            // A truthy pattern that is not a string equals no cmd.
            _ => return Ok(false),
        },
        _ => None,
    };
    let filter = condition.get("where").filter(|w| truthy(w)).map(Value::to_string);
    // Counting up to the threshold answers `count >= threshold`; past i64 it is unreachable.
    let limit = if threshold > i64::MAX as f64 { i64::MAX } else { threshold.ceil() as i64 };
    let sql = &COUNT_SQL[usize::from(cmd.is_some()) | usize::from(filter.is_some()) << 1];
    let mut params: Vec<&dyn ToSql> = vec![&correlation_id];
    if let Some(cmd) = &cmd {
        params.push(cmd);
    }
    if let Some(filter) = &filter {
        params.push(filter);
    }
    params.push(&limit);
    let count: i64 = conn.prepare_cached(sql)?.query_row(params.as_slice(), |r| r.get(0))?;
    Ok(count as f64 >= threshold)
}

/// The four counts, by whether a `cmd` (bit 0) and a `where` (bit 1) take part: plain
/// equalities, so that SQLite uses `idx_correlation_id` (or `idx_composite_correlation_cmd`).
static COUNT_SQL: Lazy<[String; 4]> = Lazy::new(|| {
    [0, 1, 2, 3].map(|mask| {
        let mut sql = String::from("SELECT COUNT(*) FROM (SELECT 1 FROM queue WHERE correlation_id = ?");
        if mask & 1 != 0 {
            sql.push_str(" AND cmd = ?");
        }
        if mask & 2 != 0 {
            sql.push_str(&format!(" AND {WHERE_FUNCTION}(data, ?)"));
        }
        sql.push_str(" LIMIT ?)");
        sql
    })
});

/// Adds [`WHERE_FUNCTION`] to a connection. The `where` text is parsed once per statement
/// run (SQLite keeps it as the argument's auxiliary data), each row's `data` once.
pub fn register(conn: &rusqlite::Connection) -> Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC | FunctionFlags::SQLITE_DIRECTONLY;
    conn.create_scalar_function(WHERE_FUNCTION, 2, flags, |ctx| {
        let filter = ctx.get_or_create_aux(1, |raw| Ok::<_, rusqlite::Error>(parse(raw).unwrap_or(Value::Null)))?;
        Ok(matches_where(parse(ctx.get_raw(0)).as_ref(), &filter))
    })?;
    Ok(())
}

/// A stored JSON text, or `None` (JavaScript's `undefined` fields) when it is not JSON.
fn parse(value: ValueRef<'_>) -> Option<Value> {
    match value {
        ValueRef::Text(bytes) | ValueRef::Blob(bytes) => serde_json::from_slice(bytes).ok(),
        _ => None,
    }
}

/// `data[key]` as JavaScript reads it from parsed JSON: an own field of an object, or an
/// element of an array by its canonical index.
fn field<'v>(data: Option<&'v Value>, key: &str) -> Option<&'v Value> {
    match data? {
        Value::Object(fields) => fields.get(key),
        Value::Array(items) => key.parse::<usize>().ok().filter(|i| i.to_string() == key).and_then(|i| items.get(i)),
        _ => None,
    }
}

/// `Object.entries(value)` of a JSON value: an object's fields, an array's elements by index,
/// a string's UTF-16 units (`None` when one is half a surrogate pair, which no data string
/// can equal), nothing for other primitives.
fn entries(value: &Value) -> Option<Vec<(Cow<'_, str>, Cow<'_, Value>)>> {
    Some(match value {
        Value::Object(fields) => fields.iter().map(|(k, v)| (Cow::Borrowed(k.as_str()), Cow::Borrowed(v))).collect(),
        Value::Array(items) => {
            items.iter().enumerate().map(|(i, v)| (Cow::Owned(i.to_string()), Cow::Borrowed(v))).collect()
        }
        Value::String(s) => s
            .encode_utf16()
            .enumerate()
            .map(|(i, unit)| {
                Some((Cow::Owned(i.to_string()), Cow::Owned(Value::String(String::from_utf16(&[unit]).ok()?))))
            })
            .collect::<Option<_>>()?,
        Value::Null | Value::Bool(_) | Value::Number(_) => Vec::new(),
    })
}

/// EventLite's `_matchesWhere(data, where)`.
pub fn matches_where(data: Option<&Value>, filter: &Value) -> bool {
    let Some(fields) = entries(filter) else { return false };
    fields.iter().all(|(key, expected)| {
        let value = field(data, key);
        match expected.as_ref() {
            Value::Object(_) | Value::Array(_) => {
                let Some(operators) = entries(expected) else { return false };
                operators.iter().all(|(operator, operand)| operator_holds(value, operator, operand))
            }
            primitive => strictly_equal(value, primitive),
        }
    })
}

fn operator_holds(value: Option<&Value>, operator: &str, operand: &Value) -> bool {
    match operator {
        "$eq" => strictly_equal(value, operand),
        "$ne" => !strictly_equal(value, operand),
        "$gt" => relates(value, Relation::Gt, operand),
        "$gte" => relates(value, Relation::Gte, operand),
        "$lt" => relates(value, Relation::Lt, operand),
        "$lte" => relates(value, Relation::Lte, operand),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Config, Store, MEMORY};
    use serde_json::json;

    fn matches(data: Value, filter: Value) -> bool {
        matches_where(Some(&data), &filter)
    }

    #[test]
    fn where_compares_fields_as_eventlite_does() {
        let data = json!({ "amount": 1500, "status": "paid", "flag": true, "note": null, "tags": ["a"] });
        assert!(matches(data.clone(), json!({ "status": "paid", "flag": true, "note": null })));
        assert!(!matches(data.clone(), json!({ "flag": 1 })), "strict equality: true is not 1");
        assert!(!matches(data.clone(), json!({ "missing": null })), "undefined is not null");
        assert!(!matches(data.clone(), json!({ "tags": ["a"] })), "an array operand is read as operators");
        assert!(matches(data.clone(), json!({ "amount": { "$gte": 1000, "$lt": 2000 }, "status": { "$ne": "open" } })));
        assert!(!matches(data.clone(), json!({ "amount": { "$gte": 1000, "$lt": 1200 } })), "every operator must hold");
        assert!(!matches(data.clone(), json!({ "amount": { "$in": [1500] } })), "an unknown operator never matches");
        assert!(matches(data.clone(), json!({ "amount": {} })), "no operators: nothing to fail");
        assert!(matches(data.clone(), json!({ "missing": { "$ne": 1 } })));
        assert!(!matches(data.clone(), json!({ "missing": { "$gte": 0 } })));
        assert!(matches(json!({ "amount": "1500" }), json!({ "amount": { "$gte": 1000 } })), "JavaScript converts");
        assert!(matches(json!(["x", "y"]), json!({ "1": "y" })), "an array's element by index");
        assert!(matches(json!({ "0": "a", "1": "b" }), json!("ab")), "a string where: its characters by index");
        assert!(matches(data.clone(), json!(5)), "a number has no entries");
        assert!(!matches_where(None, &json!({ "a": 1 })), "data that is not JSON has no fields");
    }

    #[test]
    fn correlation_ids_are_what_eventlite_would_query_by() {
        assert_eq!(correlation_of(&json!({ "correlationId": "c" })).as_deref(), Some("c"));
        assert_eq!(correlation_of(&json!({ "correlationId": 12 })).as_deref(), Some("12"));
        assert_eq!(correlation_of(&json!({ "correlationId": "" })), None);
        assert_eq!(correlation_of(&json!({ "correlationId": 0 })), None);
        assert_eq!(
            correlation_of(&json!({ "correlationId": "0" })).as_deref(),
            Some("0"),
            "a non-empty string is truthy"
        );
        assert_eq!(correlation_of(&json!({ "correlationId": null })), None);
        assert_eq!(correlation_of(&json!({ "pattern": "x" })), None);
        assert_eq!(correlation_of(&json!("c")), None);
    }

    #[test]
    fn a_condition_counts_matching_events_up_to_its_threshold() {
        let mut store = Store::open(Config::new(MEMORY)).unwrap();
        store
            .append(
                r#"[["approved",{"amount":500},"","",1,"c",null,{},1],["approved",{"amount":1500},"","",1,"c",null,{},2],
                   ["approved",{"amount":2000},"","",1,"c",null,{},3],["rejected",{},"","",1,"c",null,{},4],
                   ["approved",{"amount":9000},"","",1,"other",null,{},5]]"#,
            )
            .unwrap();
        let conn = store.conn();
        let met = |group, condition: Value| is_met(conn, group, &condition).unwrap();
        assert!(met(Group::All, json!({ "pattern": "rejected", "correlationId": "c" })));
        assert!(!met(Group::All, json!({ "pattern": "shipped", "correlationId": "c" })));
        assert!(met(Group::Any, json!({ "correlationId": "c", "minCount": 4 })), "no pattern: every cmd counts");
        assert!(!met(Group::Any, json!({ "correlationId": "c", "minCount": 5 })));
        assert!(!met(Group::All, json!({ "pattern": "approved" })), "no correlation id: never");
        let big =
            json!({ "pattern": "approved", "correlationId": "c", "count": 2, "where": { "amount": { "$gte": 1000 } } });
        assert!(met(Group::Count, big));
        let three =
            json!({ "pattern": "approved", "correlationId": "c", "count": 3, "where": { "amount": { "$gte": 1000 } } });
        assert!(!met(Group::Count, three));
        assert!(!met(Group::Count, json!({ "pattern": "approved", "correlationId": "c" })), "count missing: never");
        assert!(met(Group::Sequence, json!({ "pattern": "nothing", "correlationId": "c", "minCount": 0 })));
        assert!(!met(Group::All, json!({ "pattern": 5, "correlationId": "c" })), "a pattern that is no string");
        assert!(met(Group::All, json!({ "pattern": "", "correlationId": "c" })), "an empty pattern filters nothing");
    }

    #[test]
    fn the_sql_function_is_usable_in_plain_sql() {
        let store = Store::open(Config::new(MEMORY)).unwrap();
        let hit: bool = store
            .conn()
            .query_row(&format!("SELECT {WHERE_FUNCTION}(?1, ?2)"), ["{\"a\":2}", "{\"a\":{\"$gt\":1}}"], |r| r.get(0))
            .unwrap();
        assert!(hit);
        let garbage: bool =
            store.conn().query_row(&format!("SELECT {WHERE_FUNCTION}('not json', ?1)"), ["{}"], |r| r.get(0)).unwrap();
        assert!(garbage, "an empty where matches even data that is not JSON");
    }
}
