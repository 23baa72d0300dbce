//! Duplicate checks in time linear in the list: a scan for the short lists
//! of the usual case (no allocation), a hash set past that.
//!
//! Lists read from a peer are bounded by the verifier's limits before they
//! get here; these keep the work linear even with the limits lifted.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

/// Up to this many entries a quadratic scan (at most 120 comparisons)
/// beats hashing.
const SCAN: usize = 16;

/// The index of the first entry whose key equals an earlier entry's.
pub(crate) fn first_repeat<'a, T, K: Eq + Hash>(
    items: &'a [T],
    key: impl Fn(&'a T) -> K,
) -> Option<usize> {
    first_repeat_in(items.len(), items.iter().map(&key))
}

/// [`first_repeat`] over `len` keys that can be walked again (`Clone`),
/// such as identifiers in one buffer: nothing is collected for a short list.
pub(crate) fn first_repeat_in<K: Eq + Hash>(
    len: usize,
    keys: impl Iterator<Item = K> + Clone,
) -> Option<usize> {
    if len <= SCAN {
        return keys
            .clone()
            .enumerate()
            .skip(1)
            .find(|(i, k)| keys.clone().take(*i).any(|d| d == *k))
            .map(|(i, _)| i);
    }
    let mut seen = HashSet::with_capacity(len);
    keys.enumerate()
        .find_map(|(i, k)| (!seen.insert(k)).then_some(i))
}

/// Keep one entry per key, in the position of its first occurrence, with
/// the value of its last (RFC 8941 parameters: a later parameter of the
/// same name replaces the value of the earlier one).
pub(crate) fn last_value_wins<K: Eq + Hash + Copy, V>(entries: &mut Vec<(K, V)>) {
    if entries.len() < 2 {
        return;
    }
    if entries.len() <= SCAN {
        let mut i = 1;
        while i < entries.len() {
            let k = entries[i].0;
            match entries[..i].iter().position(|(d, _)| *d == k) {
                Some(j) => {
                    let (_, v) = entries.remove(i);
                    entries[j].1 = v;
                }
                None => i += 1,
            }
        }
        return;
    }
    let mut first: HashMap<K, usize> = HashMap::with_capacity(entries.len());
    let mut out: Vec<(K, V)> = Vec::with_capacity(entries.len());
    for (k, v) in entries.drain(..) {
        match first.entry(k) {
            Entry::Occupied(e) => out[*e.get()].1 = v,
            Entry::Vacant(e) => {
                e.insert(out.len());
                out.push((k, v));
            }
        }
    }
    *entries = out;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The obvious quadratic version.
    fn reference(entries: &[(u8, u32)]) -> Vec<(u8, u32)> {
        let mut out: Vec<(u8, u32)> = Vec::new();
        for &(k, v) in entries {
            match out.iter_mut().find(|(d, _)| *d == k) {
                Some(e) => e.1 = v,
                None => out.push((k, v)),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn agrees_with_the_quadratic_versions(
            entries in proptest::collection::vec((0u8..40, any::<u32>()), 0..60),
        ) {
            let mut ours = entries.clone();
            last_value_wins(&mut ours);
            prop_assert_eq!(&ours, &reference(&entries));
            let keys: Vec<u8> = entries.iter().map(|e| e.0).collect();
            let expected = (1..keys.len()).find(|&i| keys[..i].contains(&keys[i]));
            prop_assert_eq!(first_repeat(&keys, |k| *k), expected);
        }
    }
}
