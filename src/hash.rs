//! A hasher for the maps on the hot path of every read, whose keys are small integers the
//! process makes itself (file descriptors, the addresses of statement texts): nobody can
//! choose them to collide, so the standard library's SipHash, built to resist that, buys
//! nothing there and costs more than the rest of the lookup. This is a multiply-rotate hash
//! after rustc's `FxHasher`.

use std::hash::{BuildHasherDefault, Hasher};

/// `HashMap<K, V, FastHash>`: a map keyed by integers the process chose.
pub type FastHash = BuildHasherDefault<IntHasher>;

#[derive(Default, Clone, Copy)]
pub struct IntHasher(u64);

/// An odd constant with its bits well mixed (rustc's), so that the product spreads each bit
/// of the key over the bits above it.
const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl IntHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for IntHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
    }

    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    #[inline]
    fn write_i32(&mut self, n: i32) {
        self.write_u32(n as u32);
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    /// The product's middle bits, the best mixed, moved to where hashbrown reads: the bucket
    /// from the lowest bits and a tag from the top seven. A multiply alone leaves the low bits
    /// of the hash to the low bits of the key, all zero in an aligned address.
    #[inline]
    fn finish(&self) -> u64 {
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::FastHash;

    /// hashbrown picks a bucket from the low bits and tags it with the top seven: keys that
    /// differ only in their low bits (descriptors, aligned addresses) must differ in both.
    #[test]
    fn small_and_aligned_keys_spread_over_the_top_and_bottom_bits() {
        let hash = |key: usize| FastHash::default().hash_one(key);
        for keys in [(0..1024).collect::<Vec<usize>>(), (0..1024).map(|k| 0x7f00_0000_0000 + 16 * k).collect()] {
            let hashes: std::collections::HashSet<u64> = keys.iter().map(|&k| hash(k)).collect();
            assert_eq!(hashes.len(), keys.len(), "no two keys collide");
            let tops: std::collections::HashSet<u64> = hashes.iter().map(|h| h >> 57).collect();
            let lows: std::collections::HashSet<u64> = hashes.iter().map(|h| h & 1023).collect();
            assert!(tops.len() > 100 && lows.len() > 500, "{} top tags, {} low buckets", tops.len(), lows.len());
        }
    }
}
