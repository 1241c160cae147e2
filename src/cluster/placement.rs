//! Rendezvous (highest random weight) placement: pure functions, no I/O.
//!
//! Every server gets a score for every key; the key lives on the servers
//! with the highest scores. Adding or removing a server changes only the
//! keys whose top scores involve that server, about 1/N of them.
//!
//! A key is placed by its [hash tag](crate::hash_tag): the text inside its
//! first `{...}`, or the whole key when it has none.
//!
//! The hash is xxh3-64 (xxhash-rust), a fixed published algorithm: the same
//! key lands on the same server in every process, build and Rust release.
//! `std`'s `DefaultHasher` promises none of that.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::hash_tag;

/// A server's identity in the placement: a seed derived from its name, so
/// a key's score on a server depends on the name alone (not on the order
/// the servers were listed in), and its weight.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Slot {
    seed: u64,
    weight: f64,
}

impl Slot {
    /// `name` is the server's address as the cluster names it
    /// (`host:port`); `weight` is positive and finite (the builder checks).
    pub(crate) fn new(name: &str, weight: f64) -> Slot {
        Slot {
            seed: xxh3_64(name.as_bytes()),
            weight,
        }
    }

    /// The key's score on this server. Weighted rendezvous hashing: with
    /// `u` the hash mapped to (0, 1), `score = -weight / ln(u)`. A server
    /// of weight 2 then owns twice the keys of a server of weight 1, and
    /// with equal weights the order is simply the order of the hashes.
    pub(crate) fn score(&self, key: &str) -> f64 {
        let hash = xxh3_64_with_seed(key.as_bytes(), self.seed);
        // The top 53 bits, centred in their interval: strictly inside
        // (0, 1), so ln(u) is finite and negative.
        let unit = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        -self.weight / unit.ln()
    }
}

/// The indices of `slots` from the best owner of `key` to the worst,
/// by its [hash tag](crate::hash_tag). Equal scores (vanishingly rare)
/// fall back to the seeds, so the order is still the same everywhere.
pub(crate) fn rank(key: &str, slots: &[Slot]) -> Vec<usize> {
    let key = hash_tag(key);
    let mut scored: Vec<(f64, u64, usize)> = slots
        .iter()
        .enumerate()
        .map(|(index, slot)| (slot.score(key), slot.seed, index))
        .collect();
    scored.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
    scored.into_iter().map(|(_, _, index)| index).collect()
}

/// The best owner of `key`: the first of [`rank`], without ranking the
/// others.
pub(crate) fn best(key: &str, slots: &[Slot]) -> Option<usize> {
    let key = hash_tag(key);
    slots
        .iter()
        .enumerate()
        .map(|(index, slot)| (slot.score(key), slot.seed, index))
        .max_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
        .map(|(_, _, index)| index)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(names: &[String]) -> Vec<Slot> {
        names.iter().map(|name| Slot::new(name, 1.0)).collect()
    }

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{}:50051", i + 1)).collect()
    }

    fn owner(key: &str, names: &[String]) -> String {
        names[rank(key, &slots(names))[0]].clone()
    }

    /// Pinned placement: if this changes, every deployed cluster would move
    /// its keys on upgrade. Never update these values to make it pass.
    #[test]
    fn placement_matches_the_pinned_test_vector() {
        let names = names(5);
        let expected = [
            ("user:1", "10.0.0.1:50051"),
            ("user:2", "10.0.0.2:50051"),
            ("session:abc", "10.0.0.2:50051"),
            ("greeting", "10.0.0.2:50051"),
            ("", "10.0.0.5:50051"),
        ];
        let got: Vec<(&str, String)> = expected
            .iter()
            .map(|(key, _)| (*key, owner(key, &names)))
            .collect();
        let want: Vec<(&str, String)> = expected
            .iter()
            .map(|(key, owner)| (*key, owner.to_string()))
            .collect();
        assert_eq!(got, want);
        // The published xxh3-64 value of the empty input, and one seeded
        // score, so a change of hash or of its use is caught separately.
        assert_eq!(xxh3_64(b""), 0x2d06_8005_38d3_94c2);
        assert_eq!(
            Slot::new(&names[0], 1.0).score("user:1").to_bits(),
            0x403f_0791_964e_97ed
        );
    }

    #[test]
    fn keys_with_one_tag_rank_the_servers_alike_and_untagged_keys_keep_their_place() {
        let names = names(5);
        let slots = slots(&names);
        let spread: std::collections::HashSet<usize> = (0..200)
            .map(|i| rank(&format!("entry:{i}:{{user7}}"), &slots)[0])
            .collect();
        assert_eq!(spread.len(), 1, "one tag, one home");
        for i in 0..200 {
            let tagged = format!("c:{{k{i}}}rest-{i}");
            assert_eq!(rank(&tagged, &slots), rank(&format!("k{i}"), &slots));
            assert_eq!(best(&tagged, &slots), best(&format!("k{i}"), &slots));
        }
    }

    #[test]
    fn ranking_does_not_depend_on_listing_order() {
        let forward = names(6);
        let mut backward = forward.clone();
        backward.reverse();
        for i in 0..1000 {
            let key = format!("k{i}");
            assert_eq!(owner(&key, &forward), owner(&key, &backward));
        }
    }

    /// Binomial bounds: with n keys each moving with probability p, the
    /// count moved is within 6 standard deviations of n·p (a false alarm
    /// about once in a billion runs).
    fn assert_binomial(moved: usize, keys: usize, p: f64, what: &str) {
        let mean = keys as f64 * p;
        let sd = (keys as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (moved as f64 - mean).abs() <= 6.0 * sd,
            "{what}: moved {moved} of {keys}, expected {mean:.0} ± {:.0}",
            6.0 * sd
        );
    }

    #[test]
    fn removing_or_adding_one_of_n_servers_moves_about_one_nth_and_nothing_else() {
        const KEYS: usize = 100_000;
        for n in 3..=10 {
            let all = names(n + 1);
            let before = &all[..n];
            let before_slots = slots(before);
            let removed = &before[n / 2];
            let after_removal: Vec<String> =
                before.iter().filter(|s| *s != removed).cloned().collect();
            let removal_slots = slots(&after_removal);
            let added_slots = slots(&all);
            let (mut moved_by_removal, mut moved_by_addition) = (0, 0);
            for i in 0..KEYS {
                let key = format!("key-{i}");
                let was = &before[rank(&key, &before_slots)[0]];
                let now = &after_removal[rank(&key, &removal_slots)[0]];
                if was == removed {
                    moved_by_removal += 1;
                } else {
                    assert_eq!(was, now, "{key} moved though its server stayed (n = {n})");
                }
                let grown = &all[rank(&key, &added_slots)[0]];
                if grown != was {
                    assert_eq!(grown, &all[n], "{key} moved to an old server (n = {n})");
                    moved_by_addition += 1;
                }
            }
            assert_binomial(moved_by_removal, KEYS, 1.0 / n as f64, "removal");
            assert_binomial(moved_by_addition, KEYS, 1.0 / (n + 1) as f64, "addition");
        }
    }

    #[test]
    fn weights_share_keys_in_proportion() {
        let names = names(3);
        let weighted = [
            Slot::new(&names[0], 1.0),
            Slot::new(&names[1], 1.0),
            Slot::new(&names[2], 2.0),
        ];
        const KEYS: usize = 40_000;
        let heavy = (0..KEYS)
            .filter(|i| rank(&format!("w{i}"), &weighted)[0] == 2)
            .count();
        assert_binomial(heavy, KEYS, 0.5, "weight 2 of 4");
    }
}
