//! Key groups: the unit in which keyed state is partitioned and redistributed.
//!
//! Every key belongs to one of `max_parallelism` key groups; each subtask owns a contiguous
//! range of them. Because state is stored per key group, a job can restore with another
//! parallelism: the ranges are recomputed and each subtask picks up its groups. The formulas are
//! Flink's (`KeyGroupRangeAssignment`).

use std::hash::{BuildHasher, Hash};

/// A contiguous, inclusive range of key groups owned by one subtask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyGroupRange {
    pub start: usize,
    pub end: usize,
}

/// The seed of the key hash. Fixed, so every process of a job agrees on where a key lives.
const KEY_HASH_SEED: u64 = 0x5248_454f_2d4b_4559; // "RHEO-KEY"

/// Hashes a key the same way in every process and run.
pub fn hash_key<K: Hash + ?Sized>(key: &K) -> u64 {
    foldhash::fast::FixedState::with_seed(KEY_HASH_SEED).hash_one(key)
}

impl KeyGroupRange {
    /// The key group of a key hash (murmur finaliser spreads weak hashes first).
    pub fn key_group_of(hash: u64, max_parallelism: usize) -> usize {
        let mut h = hash;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        (h % max_parallelism as u64) as usize
    }

    /// The subtask that owns a key group.
    pub fn subtask_of(key_group: usize, max_parallelism: usize, parallelism: usize) -> usize {
        key_group * parallelism / max_parallelism
    }

    /// The key groups owned by `subtask`.
    pub fn for_subtask(max_parallelism: usize, parallelism: usize, subtask: usize) -> Self {
        let start = (subtask * max_parallelism).div_ceil(parallelism);
        let end = ((subtask + 1) * max_parallelism).div_ceil(parallelism) - 1;
        Self { start, end }
    }

    pub fn contains(&self, key_group: usize) -> bool {
        (self.start..=self.end).contains(&key_group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_all_groups_and_agree_with_subtask_of() {
        for max in [1, 7, 128, 129] {
            for p in 1..=max.min(9) {
                let mut next = 0;
                for s in 0..p {
                    let range = KeyGroupRange::for_subtask(max, p, s);
                    assert_eq!(range.start, next, "max {max} p {p} s {s}");
                    for g in range.start..=range.end {
                        assert_eq!(KeyGroupRange::subtask_of(g, max, p), s);
                    }
                    next = range.end + 1;
                }
                assert_eq!(next, max);
            }
        }
    }

    #[test]
    fn key_hash_is_stable() {
        assert_eq!(hash_key("hello"), hash_key(&"hello".to_string()));
        let groups: std::collections::HashSet<_> =
            (0..1000).map(|i| KeyGroupRange::key_group_of(hash_key(&i), 128)).collect();
        assert!(groups.len() > 100, "keys spread over key groups: {}", groups.len());
    }
}
