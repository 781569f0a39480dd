//! Prints the plan SQLite picks for every paginated query, for the first pages (by offset) and
//! for the pages after a cursor, under three index settings. docs/performance.md quotes its output.
//!
//! Run: `cargo run --release --example query_plans`

use std::collections::HashMap;

use eventlite_native::page::{query_plan, Query};
use eventlite_native::store::{Config, Store, MEMORY};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings: [(&str, &[&str]); 3] = [
        ("default indexes (correlation_id, causation_id)", &[]),
        ("+ indexes.cmd, indexes.user, indexes.datetime", &["cmd", "user", "datetime"]),
        (
            "+ indexes.correlation_cmd, indexes.user_datetime",
            &["cmd", "user", "datetime", "correlation_cmd", "user_datetime"],
        ),
    ];
    let queries = [
        ("getByCorrelationIdPaginated", Query::Correlation("c")),
        ("getChildEventsPaginated", Query::Children(1)),
        ("getEventsByUserPaginated", Query::User("u")),
        ("getEventsByCmdPaginated", Query::Cmd("go")),
        ("getEventsInTimeRangePaginated", Query::TimeRange(0.0, 1.0)),
    ];
    for (title, keys) in settings {
        let mut config = Config::new(MEMORY);
        config.indexes = keys.iter().map(|k| (k.to_string(), true)).collect::<HashMap<_, _>>();
        let store = Store::open(config)?;
        println!("[{title}]");
        for (method, query) in queries {
            println!("{method}");
            println!("  offset: {}", query_plan(store.conn(), query, false)?.join(" | "));
            println!("  cursor: {}", query_plan(store.conn(), query, true)?.join(" | "));
        }
        println!();
    }
    Ok(())
}
