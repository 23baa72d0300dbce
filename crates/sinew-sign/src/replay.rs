//! A bounded cache of signatures seen recently.
//!
//! Entries are keyed by the 32-byte MAC (a fresh nonce makes every
//! signature unique, and only signatures that verified are inserted, so a
//! peer cannot choose keys) and expire when the signature would be refused
//! as too old anyway. The cache is split into shards with a lock each (one
//! shard below 1024 entries, so the capacity is exact for small caches);
//! a full shard first drops expired entries and then, if every entry is
//! still live, refuses instead of forgetting a live signature.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Mutex, MutexGuard};

/// The MACs are uniformly random: the first eight bytes are a fine hash.
#[derive(Default)]
struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(b);
        }
    }
    fn write_usize(&mut self, _: usize) {}
}

type Map = HashMap<[u8; 32], u64, BuildHasherDefault<PrefixHasher>>;

struct Shard {
    map: Map,
    /// The earliest expiry in `map` (a lower bound), so a full shard of live
    /// entries does not rescan on every request.
    next_expiry: u64,
}

pub(crate) struct ReplayCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayError {
    Replayed,
    Full,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let shards = if capacity < 1024 { 1 } else { 16 };
        let per_shard = capacity.div_ceil(shards);
        let shards = (0..shards)
            .map(|_| {
                Mutex::new(Shard {
                    map: Map::default(),
                    next_expiry: u64::MAX,
                })
            })
            .collect();
        Self { shards, per_shard }
    }

    fn shard(&self, key: &[u8; 32]) -> MutexGuard<'_, Shard> {
        let i = usize::from(key[31]) % self.shards.len();
        self.shards[i]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Remember `key` until `expires_at` (Unix seconds), unless it is
    /// already remembered and live, or the shard is full of live entries.
    pub(crate) fn insert(
        &self,
        key: [u8; 32],
        expires_at: u64,
        now: u64,
    ) -> Result<(), ReplayError> {
        let mut shard = self.shard(&key);
        if let Some(&exp) = shard.map.get(&key) {
            if exp > now {
                return Err(ReplayError::Replayed);
            }
        }
        if shard.map.len() >= self.per_shard && !shard.map.contains_key(&key) {
            if shard.next_expiry > now {
                return Err(ReplayError::Full);
            }
            shard.map.retain(|_, exp| *exp > now);
            shard.next_expiry = shard.map.values().copied().min().unwrap_or(u64::MAX);
            if shard.map.len() >= self.per_shard {
                return Err(ReplayError::Full);
            }
        }
        shard.next_expiry = shard.next_expiry.min(expires_at);
        shard.map.insert(key, expires_at);
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.map.len()).unwrap_or(0))
            .sum()
    }
}

impl std::fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayCache")
            .field("shards", &self.shards.len())
            .field("per_shard", &self.per_shard)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn k(i: u8) -> [u8; 32] {
        let mut k = [i; 32];
        k[0] = i.wrapping_mul(37);
        k
    }

    #[test]
    fn replays_and_expiry() {
        let c = ReplayCache::new(10);
        assert_eq!(c.insert(k(1), 100, 0), Ok(()));
        assert_eq!(c.insert(k(1), 100, 50), Err(ReplayError::Replayed));
        // After expiry the same key is accepted again (it would be too old
        // to verify anyway).
        assert_eq!(c.insert(k(1), 200, 100), Ok(()));
    }

    #[test]
    fn full_of_live_entries_refuses_then_recovers() {
        let c = ReplayCache::new(2);
        assert_eq!(c.insert(k(1), 100, 0), Ok(()));
        assert_eq!(c.insert(k(2), 150, 0), Ok(()));
        assert_eq!(c.insert(k(3), 100, 10), Err(ReplayError::Full));
        // Live entries are never forgotten.
        assert_eq!(c.insert(k(1), 100, 10), Err(ReplayError::Replayed));
        assert_eq!(c.insert(k(3), 200, 100), Ok(()));
        assert_eq!(c.len(), 2);
        assert_eq!(c.insert(k(2), 150, 120), Err(ReplayError::Replayed));
    }

    proptest! {
        #[test]
        fn never_exceeds_capacity(cap in 1usize..40, ops in proptest::collection::vec((0u8..60, 0u64..50, 1u64..30), 0..300)) {
            let c = ReplayCache::new(cap);
            let mut now = 0;
            for (key, dt, ttl) in ops {
                now += dt % 3;
                let _ = c.insert(k(key), now + ttl, now);
                prop_assert!(c.len() <= cap);
            }
        }
    }
}
