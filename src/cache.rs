//! The query cache behind `retrieveByIDCached` and `getTransactionCached`: keys, TTL, LRU
//! order, statistics and invalidation all live here, but the cached rows do not. A hit must
//! cost little more than one boundary crossing, and handing a row over as JSON text would
//! cost a `JSON.parse` on every hit; so the JavaScript layer keeps each parsed row (or
//! transaction) as a template in an array, and an entry here holds only the *slot* of its
//! template in that array. A hit returns the slot; a miss reads from SQLite and returns the
//! text together with the slot JavaScript must keep the parsed value in. A slot whose entry is
//! evicted, expired or invalidated is handed out again, so the array never holds more than
//! `max_size` templates, and a stale template is unreachable by any key.
//!
//! What a cached read may return is exactly what the uncached read would return:
//! - writes through this store forget the transactions they touch (see `Store::append`) and
//!   `reset` forgets everything;
//! - writes by another connection (another queue on the file, another process) move SQLite's
//!   `PRAGMA data_version`. It is checked before every transaction lookup, and when it moved
//!   everything is forgotten. The check costs more than a whole id hit, so id lookups do not
//!   check it: a stored row never changes (the log is append-only), and only a `reset()` by
//!   another connection can make a cached row wrong. Such a row is dropped at the next
//!   transaction lookup or when its `ttl` runs out, whichever comes first.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use crate::connection::Connection;
use lru::LruCache;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::pieces::Pieces;
use crate::read;

/// The `cache` option of `initQueue`.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    pub enabled: bool,
    pub max_size: usize,
    pub ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> CacheConfig {
        CacheConfig { enabled: true, max_size: 1000, ttl: Duration::from_millis(300_000) }
    }
}

/// The largest `max_size`: slots stay below it and cross to JavaScript as 32-bit integers.
pub const MAX_SIZE: usize = i32::MAX as usize;

impl CacheConfig {
    /// The JavaScript layer validates first; this refuses what would make the cache misbehave.
    pub fn check(&self) -> Result<()> {
        if self.max_size == 0 || self.max_size > MAX_SIZE {
            return Err(Error::InvalidOption(format!(
                "cache.maxSize must be an integer from 1 to {MAX_SIZE}, got {}",
                self.max_size
            )));
        }
        if self.ttl.is_zero() {
            return Err(Error::InvalidOption("cache.ttl must be at least 1 ms".into()));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Id(i64),
    Transaction(String),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    slot: u32,
    stored: Instant,
}

/// What a cached read found.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The slot of the template JavaScript already holds.
    Hit(u32),
    /// Read from SQLite: the JSON text `[values, slot]`, where `values` are the row's or the
    /// transaction's rows' values as the plain reads send them (see [`crate::read`]), and
    /// `slot` is where JavaScript keeps the row(s) built from them, or `-1` when they are not
    /// cached (the cache is disabled); in [`Pieces`], the further ones continuing `values`.
    Miss(Vec<String>),
}

/// `getCacheStats()`, as the spec lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheStats {
    pub enabled: bool,
    pub size: usize,
    pub max_size: usize,
    pub ttl: u128,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub expirations: u64,
    pub hit_rate: f64,
}

impl CacheStats {
    /// JSON text for JavaScript to parse once. Serializing numbers and booleans cannot fail.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

pub struct Cache {
    config: CacheConfig,
    entries: LruCache<Key, Entry>,
    /// Slots given up by entries that left, handed out again before new ones.
    free: Vec<u32>,
    /// The first slot never handed out; slots stay below `max_size`.
    next_slot: u32,
    /// Entries keyed by a correlation id: when there are none, a write has nothing to forget
    /// and skips the lookups (and the key allocation) altogether.
    transactions: usize,
    /// `PRAGMA data_version` when last checked.
    data_version: Option<i64>,
    hits: u64,
    misses: u64,
    evictions: u64,
    expirations: u64,
}

impl Cache {
    pub fn new(config: CacheConfig) -> Cache {
        let capacity = NonZeroUsize::new(config.max_size).unwrap_or(NonZeroUsize::MIN);
        Cache {
            config,
            // `sparse`: memory grows with the entries, not with `max_size` up front.
            entries: LruCache::sparse(capacity),
            free: Vec::new(),
            next_slot: 0,
            transactions: 0,
            data_version: None,
            hits: 0,
            misses: 0,
            evictions: 0,
            expirations: 0,
        }
    }

    /// `retrieveByIDCached(id)`: `None` when there is no such event (which is not cached, so
    /// that the event is found once stored).
    pub fn by_id(&mut self, conn: &Connection, id: i64) -> Result<Option<Lookup>> {
        self.get(conn, Key::Id(id))
    }

    /// The slot of event `id` when it is cached and live, counted as a hit; otherwise `None`,
    /// counting nothing: the caller then goes through [`Cache::by_id`], which counts the miss.
    /// The one lookup cheap enough to be worth its own fast path across the boundary.
    pub fn id_hit(&mut self, id: i64) -> Option<u32> {
        self.hit(&Key::Id(id), Instant::now())
    }

    /// `getTransactionCached(correlationId)`: always found, since a transaction with no events
    /// is an empty array. That is cached too: the first event stored with the id forgets it.
    pub fn transaction(&mut self, conn: &Connection, correlation_id: String) -> Result<Option<Lookup>> {
        self.follow_other_connections(conn)?;
        self.get(conn, Key::Transaction(correlation_id))
    }

    /// Forgets the cached transaction `correlation_id`, after an event was stored in it.
    pub fn forget_transaction(&mut self, correlation_id: Option<&str>) {
        if let (Some(correlation_id), true) = (correlation_id, self.transactions > 0) {
            let key = Key::Transaction(correlation_id.to_owned());
            if let Some(entry) = self.entries.pop(&key) {
                self.release(&key, entry);
            }
        }
    }

    /// Empties the cache; the counters keep counting.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.free.clear();
        self.next_slot = 0;
        self.transactions = 0;
    }

    /// The statistics, after dropping the entries whose `ttl` has run out (counted as
    /// expirations), so that `size` counts only entries a lookup could still hit.
    pub fn stats(&mut self, now: Instant) -> CacheStats {
        let ttl = self.config.ttl;
        let mut expired = Vec::new();
        self.entries.retain(|key, entry| {
            let live = now.saturating_duration_since(entry.stored) < ttl;
            if !live {
                expired.push((key.clone(), *entry));
            }
            live
        });
        for (key, entry) in expired {
            self.expirations += 1;
            self.release(&key, entry);
        }
        let lookups = self.hits + self.misses;
        CacheStats {
            enabled: self.config.enabled,
            size: self.entries.len(),
            max_size: self.config.max_size,
            ttl: self.config.ttl.as_millis(),
            hits: self.hits,
            misses: self.misses,
            evictions: self.evictions,
            expirations: self.expirations,
            hit_rate: if lookups == 0 { 0.0 } else { self.hits as f64 / lookups as f64 },
        }
    }

    /// The slot of a live entry, counted as a hit; `None` counts nothing.
    fn hit(&mut self, key: &Key, now: Instant) -> Option<u32> {
        if !self.config.enabled {
            return None;
        }
        let entry = self.entries.get(key)?;
        if now.saturating_duration_since(entry.stored) < self.config.ttl {
            self.hits += 1;
            Some(entry.slot)
        } else {
            None
        }
    }

    /// The slot of a live entry (a hit), or `None` (a miss; an expired entry is dropped and
    /// counted as an expiration). A disabled cache counts nothing.
    fn lookup(&mut self, key: &Key, now: Instant) -> Option<u32> {
        if !self.config.enabled {
            return None;
        }
        if let Some(slot) = self.hit(key, now) {
            return Some(slot);
        }
        if let Some(expired) = self.entries.pop(key) {
            self.release(key, expired);
            self.expirations += 1;
        }
        self.misses += 1;
        None
    }

    /// A hit, or else a read from SQLite whose result is cached.
    fn get(&mut self, conn: &Connection, key: Key) -> Result<Option<Lookup>> {
        let now = Instant::now();
        if let Some(slot) = self.lookup(&key, now) {
            return Ok(Some(Lookup::Hit(slot)));
        }
        let mut pieces = Pieces::new(String::with_capacity(512) + "[");
        let found = match &key {
            Key::Id(id) => read::write_by_id(&mut pieces.first, conn, *id)?,
            Key::Transaction(correlation_id) => {
                pieces.first.push('[');
                read::write_by_correlation(&mut pieces, conn, correlation_id)?;
                pieces.first.push(']');
                true
            }
        };
        if !found {
            return Ok(None);
        }
        let out = &mut pieces.first;
        out.push(',');
        match self.insert(key, now) {
            Some(slot) => out.push_str(itoa::Buffer::new().format(slot)),
            None => out.push_str("-1"),
        }
        out.push(']');
        Ok(Some(Lookup::Miss(pieces.finish())))
    }

    /// Adds an entry, evicting the least recently used one at `max_size`; returns its slot,
    /// or `None` when the cache is disabled.
    fn insert(&mut self, key: Key, now: Instant) -> Option<u32> {
        if !self.config.enabled {
            return None;
        }
        if let Some(old) = self.entries.pop(&key) {
            self.release(&key, old);
        }
        if self.entries.len() >= self.config.max_size {
            if let Some((old_key, old)) = self.entries.pop_lru() {
                if now.saturating_duration_since(old.stored) < self.config.ttl {
                    self.evictions += 1;
                } else {
                    self.expirations += 1;
                }
                self.release(&old_key, old);
            }
        }
        let slot = self.free.pop().unwrap_or_else(|| {
            self.next_slot += 1;
            self.next_slot - 1
        });
        if matches!(key, Key::Transaction(_)) {
            self.transactions += 1;
        }
        self.entries.put(key, Entry { slot, stored: now });
        Some(slot)
    }

    /// Book-keeping for an entry that has left the cache.
    fn release(&mut self, key: &Key, entry: Entry) {
        self.free.push(entry.slot);
        if matches!(key, Key::Transaction(_)) {
            self.transactions -= 1;
        }
    }

    /// Forgets everything when another connection has committed since the last check. The
    /// store checks once when it opens, so that entries cached before the first transaction
    /// lookup are measured against a known version too.
    pub fn follow_other_connections(&mut self, conn: &Connection) -> Result<()> {
        if !self.config.enabled {
            return Ok(());
        }
        let version: i64 = conn.prepare_cached("PRAGMA data_version")?.query_row([], |r| r.get(0))?;
        if self.data_version.replace(version) != Some(version) {
            self.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Config, Store, MEMORY};

    fn cache(max_size: usize, ttl_ms: u64) -> Cache {
        Cache::new(CacheConfig { enabled: true, max_size, ttl: Duration::from_millis(ttl_ms) })
    }

    fn id(n: i64) -> Key {
        Key::Id(n)
    }

    #[test]
    fn a_second_lookup_hits_the_slot_the_first_one_stored() {
        let mut c = cache(10, 1000);
        let now = Instant::now();
        assert_eq!(c.lookup(&id(1), now), None);
        let slot = c.insert(id(1), now).unwrap();
        assert_eq!(c.lookup(&id(1), now), Some(slot));
        let stats = c.stats(now);
        assert_eq!((stats.hits, stats.misses, stats.size, stats.hit_rate), (1, 1, 1, 0.5));
    }

    #[test]
    fn an_id_hit_counts_only_hits() {
        let mut c = cache(10, 50);
        let then = Instant::now();
        assert_eq!(c.hit(&id(1), then), None);
        let slot = c.insert(id(1), then).unwrap();
        assert_eq!(c.hit(&id(1), then), Some(slot));
        assert_eq!(c.hit(&id(1), then + Duration::from_millis(50)), None, "expired");
        let stats = c.stats(then);
        assert_eq!((stats.hits, stats.misses, stats.expirations, stats.size), (1, 0, 0, 1));
    }

    #[test]
    fn the_least_recently_used_entry_goes_first_and_gives_its_slot_away() {
        let mut c = cache(2, 1000);
        let now = Instant::now();
        let one = c.insert(id(1), now).unwrap();
        let two = c.insert(id(2), now).unwrap();
        assert_eq!(c.lookup(&id(1), now), Some(one));
        let three = c.insert(id(3), now).unwrap();
        assert_eq!(three, two, "the evicted entry's slot is reused");
        assert_eq!(c.lookup(&id(2), now), None);
        assert_eq!(c.lookup(&id(1), now), Some(one));
        let stats = c.stats(now);
        assert_eq!((stats.evictions, stats.expirations, stats.size), (1, 0, 2));
        assert!(c.next_slot as usize <= 2, "slots stay below max_size");
    }

    #[test]
    fn an_entry_past_its_ttl_is_a_miss_and_an_expiration() {
        let mut c = cache(10, 50);
        let then = Instant::now();
        c.insert(id(1), then).unwrap();
        c.insert(id(2), then).unwrap();
        let later = then + Duration::from_millis(50);
        assert_eq!(c.lookup(&id(1), later), None);
        let stats = c.stats(later);
        assert_eq!((stats.hits, stats.misses, stats.expirations, stats.size), (0, 1, 2, 0));
        assert_eq!(c.free.len(), 2);
    }

    #[test]
    fn forgetting_a_transaction_leaves_the_others() {
        let mut c = cache(10, 1000);
        let now = Instant::now();
        c.insert(Key::Transaction("a".into()), now).unwrap();
        c.insert(Key::Transaction("b".into()), now).unwrap();
        c.insert(id(1), now).unwrap();
        c.forget_transaction(Some("a"));
        c.forget_transaction(None);
        assert_eq!(c.lookup(&Key::Transaction("a".into()), now), None);
        assert!(c.lookup(&Key::Transaction("b".into()), now).is_some());
        assert!(c.lookup(&id(1), now).is_some());
        assert_eq!(c.transactions, 1);
    }

    #[test]
    fn a_disabled_cache_stores_and_counts_nothing() {
        let mut c = Cache::new(CacheConfig { enabled: false, ..CacheConfig::default() });
        let now = Instant::now();
        assert_eq!(c.lookup(&id(1), now), None);
        assert_eq!(c.insert(id(1), now), None);
        let stats = c.stats(now);
        assert_eq!((stats.enabled, stats.size, stats.hits, stats.misses, stats.hit_rate), (false, 0, 0, 0, 0.0));
        assert_eq!((stats.max_size, stats.ttl), (1000, 300_000));
    }

    #[test]
    fn reads_return_the_value_and_its_slot_then_the_slot() {
        let mut store = Store::open(Config::new(MEMORY)).unwrap();
        store.append(r#"[["a",{"x":1},"","",1,"c",null,{},1]]"#).unwrap();
        let Some(Lookup::Miss(pieces)) = store.cached_by_id(1).unwrap() else { panic!("expected a miss") };
        let pair: serde_json::Value = serde_json::from_str(&pieces[0]).unwrap();
        assert_eq!((pair[0][6]["x"].as_i64(), pair[1].as_i64()), (Some(1), Some(0)));
        assert_eq!(store.cached_by_id(1).unwrap(), Some(Lookup::Hit(0)));
        assert_eq!(store.cached_by_id(2).unwrap(), None);

        let Some(Lookup::Miss(pieces)) = store.cached_transaction("c".into()).unwrap() else {
            panic!("expected a miss")
        };
        let pair: serde_json::Value = serde_json::from_str(&pieces[0]).unwrap();
        assert_eq!((pair[0].as_array().unwrap().len() / 10, pair[1].as_i64()), (1, Some(1)));
        assert_eq!(store.cached_transaction("c".into()).unwrap(), Some(Lookup::Hit(1)));
    }

    #[test]
    fn writes_forget_the_transactions_they_change_including_inherited_ones() {
        let mut store = Store::open(Config::new(MEMORY)).unwrap();
        store.append(r#"[["a",{},"","",1,"p",null,{},1],["b",{},"","",1,"q",null,{},1]]"#).unwrap();
        for c in ["p", "q"] {
            assert!(matches!(store.cached_transaction(c.into()).unwrap(), Some(Lookup::Miss(_))));
        }
        // A child of event 1 with no correlation id of its own joins transaction "p".
        store.append(r#"[["c",{},"","",1,null,1,{},1]]"#).unwrap();
        let Some(Lookup::Miss(pieces)) = store.cached_transaction("p".into()).unwrap() else {
            panic!("p stayed cached")
        };
        let pair: serde_json::Value = serde_json::from_str(&pieces[0]).unwrap();
        assert_eq!(pair[0].as_array().unwrap().len() / 10, 2, "two rows of ten values");
        assert!(matches!(store.cached_transaction("q".into()).unwrap(), Some(Lookup::Hit(_))));
    }

    #[test]
    fn a_commit_by_another_connection_empties_the_cache() {
        let dir = std::env::temp_dir().join(format!("eventlite-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("events.sqlite").to_string_lossy().into_owned();
        let mut mine = Store::open(Config::new(path.clone())).unwrap();
        let mut theirs = Store::open(Config::new(path.clone())).unwrap();
        mine.append(r#"[["a",{},"","",1,"c",null,{},1]]"#).unwrap();
        assert!(matches!(mine.cached_transaction("c".into()).unwrap(), Some(Lookup::Miss(_))));
        assert!(matches!(mine.cached_transaction("c".into()).unwrap(), Some(Lookup::Hit(_))));
        theirs.append(r#"[["b",{},"","",1,"c",null,{},1]]"#).unwrap();
        let Some(Lookup::Miss(pieces)) = mine.cached_transaction("c".into()).unwrap() else { panic!("stale hit") };
        let pair: serde_json::Value = serde_json::from_str(&pieces[0]).unwrap();
        assert_eq!(pair[0].as_array().unwrap().len() / 10, 2, "two rows of ten values");
        drop((mine, theirs));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
