//! `bench --verify`: every value written says what it is, and every value
//! read is judged against what this run wrote, after Jepsen's checkers
//! (record what was acknowledged, judge what was read) but online, with
//! atomics, so that a long run needs no history.
//!
//! A value is `tcv1`, the run's id, a write sequence number (one counter
//! for the whole run, so every write has its own), the key, padding up to
//! the key's value size, and an xxh3 checksum of all that. A read is then:
//! - `corrupt`: not such a value, or its checksum is wrong (a torn or
//!   damaged value);
//! - `wrong_key`: a sound value of another key;
//! - `impossible`: a sequence number this run never issued, or another
//!   run's value where this run had already written the key;
//! - `stale`: a value older than one that had certainly replaced it before
//!   the read began.
//!
//! "Certainly replaced" is judged soundly under concurrent writers of one
//! key. Two writes of a key in flight together may land in either order,
//! so the higher sequence is not necessarily the later value. What is
//! certain: a write that starts when no other write of its key is in
//! flight comes after every earlier write of the key, all acknowledged by
//! then; once it is acknowledged, every sequence up to the highest of
//! those is replaced for good. Each key keeps three atomics (writes in
//! flight, highest acknowledged sequence, and that "replaced up to" floor)
//! and a read compares with the floor it saw before it began. A write
//! whose outcome is unknown (an error: the server may still apply it)
//! stays "in flight" forever, so its key never gets a new floor: fewer
//! stale values caught there, never a false one. Deletes replace values
//! as writes do; a set-if-absent or compare-and-set that did not write
//! replaces nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use tiny_cache_client::{CacheStore, CasOutcome, Error, ItemResult};

use super::calls::Outcome;
use super::workload::{Data, Op};
use crate::thousands;

/// What every value of `--verify` starts with.
const MAGIC: &[u8; 4] = b"tcv1";

/// Bytes of a value besides its key: magic, run id, sequence, key length,
/// checksum.
const OVERHEAD_BYTES: usize = 4 + 8 + 8 + 2 + 8;

/// The smallest value that can describe a key of `key_len` bytes.
pub fn min_value_size(key_len: usize) -> usize {
    OVERHEAD_BYTES + key_len
}

/// What a write did, for the floor of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landed {
    /// Acknowledged: the value (or the delete) is in.
    Yes,
    /// Acknowledged as not done (a set-if-absent on a present key, a
    /// compare-and-set that did not match): nothing changed.
    No,
    /// Failed: it may or may not be applied, now or later.
    Unknown,
}

/// A write under way: its sequence and what its key looked like when it
/// began.
#[derive(Debug, Clone, Copy)]
pub struct Write {
    key: usize,
    pub seq: u64,
    /// No other write of the key was in flight when it began.
    alone: bool,
    /// The highest sequence of the key acknowledged when it began.
    settled: u64,
}

/// Per key: see the module docs.
#[derive(Debug, Default)]
struct KeyState {
    in_flight: AtomicU64,
    acked_max: AtomicU64,
    floor: AtomicU64,
}

/// Reads judged, by verdict.
#[derive(Debug, Default)]
struct Counts {
    checked: AtomicU64,
    stale: AtomicU64,
    impossible: AtomicU64,
    wrong_key: AtomicU64,
    corrupt: AtomicU64,
}

/// The verdict on one value read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Sound,
    Stale,
    Impossible,
    WrongKey,
    Corrupt,
    /// Another run's value of a key this run had not written yet: what
    /// was there before, nothing to judge.
    Unjudged,
}

/// The run's record of writes and its verdicts on reads.
#[derive(Debug)]
pub struct Verifier {
    run: u64,
    /// The next sequence to issue; 0 is never issued, so a floor of 0
    /// means "nothing replaced yet".
    next_seq: AtomicU64,
    keys: Vec<KeyState>,
    counts: Counts,
    /// The first failed read, described for the report.
    first_failure: Mutex<Option<String>>,
}

impl Verifier {
    /// A verifier for `keys` keys, with a run id of its own.
    pub fn new(keys: usize, run: u64) -> Verifier {
        Verifier {
            run,
            next_seq: AtomicU64::new(1),
            keys: (0..keys).map(|_| KeyState::default()).collect(),
            counts: Counts::default(),
            first_failure: Mutex::new(None),
        }
    }

    /// Starts a write of key `key`.
    pub fn begin_write(&self, key: usize) -> Write {
        let state = &self.keys[key];
        // In this order: a write that begins after this one sees it in
        // flight, or else takes a higher sequence than anything settled.
        let before = state.in_flight.fetch_add(1, Ordering::SeqCst);
        let settled = state.acked_max.load(Ordering::SeqCst);
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        Write {
            key,
            seq,
            alone: before == 0,
            settled,
        }
    }

    /// Ends `write` with what it did.
    pub fn end_write(&self, write: Write, landed: Landed) {
        let state = &self.keys[write.key];
        match landed {
            Landed::Yes => {
                state.acked_max.fetch_max(write.seq, Ordering::SeqCst);
                if write.alone {
                    state.floor.fetch_max(write.settled, Ordering::SeqCst);
                }
                state.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            Landed::No => {
                state.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            // Stays in flight: see the module docs.
            Landed::Unknown => {}
        }
    }

    /// What a read of `key` may not return older than: taken before the
    /// read is sent.
    pub fn floor(&self, key: usize) -> Floor {
        let state = &self.keys[key];
        Floor {
            floor: state.floor.load(Ordering::SeqCst),
            written: state.acked_max.load(Ordering::SeqCst) > 0,
        }
    }

    /// The value of `write` for key `name`, `size` bytes long (at least
    /// [`min_value_size`]).
    pub fn value(&self, name: &str, write: &Write, size: usize) -> Vec<u8> {
        encode(self.run, write.seq, name, size)
    }

    /// Judges `value`, read from key `name` after `floor` was taken, and
    /// counts the verdict.
    pub fn check(&self, name: &str, value: &[u8], floor: Floor) -> Verdict {
        let verdict = match decode(value) {
            None => Verdict::Corrupt,
            Some(found) if found.run != self.run => {
                if floor.written {
                    Verdict::Impossible
                } else {
                    Verdict::Unjudged
                }
            }
            Some(found) if found.key != name.as_bytes() => Verdict::WrongKey,
            Some(found) if found.seq == 0 || found.seq >= self.next_seq.load(Ordering::SeqCst) => {
                Verdict::Impossible
            }
            Some(found) if found.seq <= floor.floor => Verdict::Stale,
            Some(_) => Verdict::Sound,
        };
        let counts = &self.counts;
        let counter = match verdict {
            Verdict::Unjudged => return verdict,
            Verdict::Sound => &counts.checked,
            Verdict::Stale => &counts.stale,
            Verdict::Impossible => &counts.impossible,
            Verdict::WrongKey => &counts.wrong_key,
            Verdict::Corrupt => &counts.corrupt,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if verdict != Verdict::Sound {
            counts.checked.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut first) = self.first_failure.lock() {
                first.get_or_insert_with(|| describe(name, value, verdict, floor));
            }
        }
        verdict
    }

    /// The counts so far.
    pub fn json(&self) -> VerifyJson {
        let c = &self.counts;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (stale, impossible, wrong_key, corrupt) = (
            load(&c.stale),
            load(&c.impossible),
            load(&c.wrong_key),
            load(&c.corrupt),
        );
        VerifyJson {
            checked: load(&c.checked),
            failures: stale + impossible + wrong_key + corrupt,
            stale,
            impossible,
            wrong_key,
            corrupt,
            first_failure: self
                .first_failure
                .lock()
                .ok()
                .and_then(|first| first.clone()),
        }
    }
}

/// See [`Verifier::floor`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floor {
    floor: u64,
    /// Whether this run had an acknowledged write of the key.
    written: bool,
}

/// `--verify`'s results, in the text report and `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyJson {
    /// Values read and judged.
    pub checked: u64,
    /// The four below together.
    pub failures: u64,
    pub stale: u64,
    pub impossible: u64,
    pub wrong_key: u64,
    pub corrupt: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_failure: Option<String>,
}

impl VerifyJson {
    /// The report's line.
    pub fn text(&self) -> String {
        let mut text = format!(
            "  verify       {} values read and checked: {} stale, {} impossible, \
             {} of another key, {} corrupt{}\n",
            thousands(self.checked),
            thousands(self.stale),
            thousands(self.impossible),
            thousands(self.wrong_key),
            thousands(self.corrupt),
            if self.failures == 0 {
                " (all sound)"
            } else {
                ""
            }
        );
        if let Some(first) = &self.first_failure {
            text.push_str(&format!("  first bad    {first}\n"));
        }
        text
    }
}

/// A value read and found wrong, in words.
fn describe(name: &str, value: &[u8], verdict: Verdict, floor: Floor) -> String {
    match (verdict, decode(value)) {
        (Verdict::Corrupt, _) | (_, None) => {
            format!(
                "{name}: {} bytes that are no sound value (corrupt or torn)",
                value.len()
            )
        }
        (Verdict::WrongKey, Some(found)) => format!(
            "{name}: holds the value of {:?} (write {})",
            String::from_utf8_lossy(found.key),
            found.seq
        ),
        (Verdict::Stale, Some(found)) => format!(
            "{name}: write {}, replaced by a write acknowledged before the read (up to {})",
            found.seq, floor.floor
        ),
        (_, Some(found)) => format!(
            "{name}: write {} of run {:x}, which this run never made",
            found.seq, found.run
        ),
    }
}

fn encode(run: u64, seq: u64, name: &str, size: usize) -> Vec<u8> {
    let key = name.as_bytes();
    let size = size.max(min_value_size(key.len()));
    let mut value = Vec::with_capacity(size);
    value.extend_from_slice(MAGIC);
    value.extend_from_slice(&run.to_le_bytes());
    value.extend_from_slice(&seq.to_le_bytes());
    // Keys are at most 250 characters (the library's rule), far below
    // u16::MAX bytes.
    value.extend_from_slice(&u16::try_from(key.len()).unwrap_or(u16::MAX).to_le_bytes());
    value.extend_from_slice(key);
    // Padding of one byte that varies with the write; a value torn between
    // two writes of one key is caught by the checksum over the sequence.
    value.resize(size - 8, b'a' + (seq % 26) as u8);
    let checksum = xxhash_rust::xxh3::xxh3_64(&value);
    value.extend_from_slice(&checksum.to_le_bytes());
    value
}

/// A sound value's contents.
struct Decoded<'v> {
    run: u64,
    seq: u64,
    key: &'v [u8],
}

fn decode(value: &[u8]) -> Option<Decoded<'_>> {
    if value.len() < OVERHEAD_BYTES || !value.starts_with(MAGIC) {
        return None;
    }
    let (body, checksum) = value.split_at(value.len() - 8);
    if xxhash_rust::xxh3::xxh3_64(body).to_le_bytes() != checksum {
        return None;
    }
    let u64_at = |at: usize| {
        body.get(at..at + 8)
            .and_then(|bytes| bytes.try_into().ok())
            .map(u64::from_le_bytes)
    };
    let key_len = usize::from(u16::from_le_bytes(body.get(20..22)?.try_into().ok()?));
    Some(Decoded {
        run: u64_at(4)?,
        seq: u64_at(12)?,
        key: body.get(22..22 + key_len)?,
    })
}

/// One write's call, given its value: what landed, and what it found.
type WriteCall<'a> = dyn Fn(&[u8]) -> Result<(Landed, Outcome), Error> + 'a;

/// Makes one `op` call over the keys numbered `keys` (one, or `--batch`
/// for the multi-key operations; never empty) with self-describing values,
/// recording every write and judging every value read. Counts as
/// `calls::perform` does.
pub fn perform(
    calls: &dyn CacheStore,
    verifier: &Verifier,
    data: &Data,
    op: Op,
    keys: &[usize],
) -> Result<Outcome, Error> {
    let Some(&key) = keys.first() else {
        return Ok(Outcome::default());
    };
    let name = data.keys[key].as_str();
    let found = |there: bool| Outcome {
        hits: u64::from(there),
        misses: u64::from(!there),
        refused: 0,
    };
    // One write of `key`: its value made, `call` run, its end recorded
    // from what `call` says landed.
    let write = |call: &WriteCall<'_>| {
        let write = verifier.begin_write(key);
        let value = verifier.value(name, &write, data.value_len(key));
        match call(&value) {
            Ok((landed, outcome)) => {
                verifier.end_write(write, landed);
                Ok(outcome)
            }
            Err(e) => {
                verifier.end_write(write, Landed::Unknown);
                Err(e)
            }
        }
    };
    Ok(match op {
        Op::Get => {
            let floor = verifier.floor(key);
            let value = calls.get(name)?;
            if let Some(value) = &value {
                verifier.check(name, value, floor);
            }
            found(value.is_some())
        }
        Op::Set => write(&|value| {
            calls
                .set(name, value)
                .map(|()| (Landed::Yes, Outcome::default()))
        })?,
        Op::Delete => write(&|_| {
            calls
                .delete(name)
                .map(|()| (Landed::Yes, Outcome::default()))
        })?,
        Op::SetIfAbsent => write(&|value| {
            let stored = calls.set_if_absent(name, value)?;
            let landed = if stored { Landed::Yes } else { Landed::No };
            Ok((landed, found(!stored)))
        })?,
        // The value last written is unknown here, so this expects the
        // key's value as pre-fill would have it and mostly does not
        // match: a conditional write judged by what it says it did.
        Op::CompareAndSet => write(&|value| {
            let outcome = calls.compare_and_set(name, data.value(key), value)?;
            let landed = if outcome == CasOutcome::Stored {
                Landed::Yes
            } else {
                Landed::No
            };
            Ok((landed, found(outcome != CasOutcome::NotFound)))
        })?,
        Op::Touch | Op::SetMany | Op::DeleteMany | Op::GetMany => {
            return perform_many(calls, verifier, data, op, keys)
        }
    })
}

/// The multi-key operations (and `touch`, which writes no value) of
/// [`perform`].
fn perform_many(
    calls: &dyn CacheStore,
    verifier: &Verifier,
    data: &Data,
    op: Op,
    keys: &[usize],
) -> Result<Outcome, Error> {
    let names: Vec<&str> = keys.iter().map(|&key| data.keys[key].as_str()).collect();
    let mut outcome = Outcome::default();
    match op {
        Op::GetMany => {
            let floors: Vec<Floor> = keys.iter().map(|&key| verifier.floor(key)).collect();
            let items = calls.get_many(&names)?;
            for (index, item) in items.into_iter().enumerate() {
                match item.result {
                    Ok(Some(value)) => {
                        outcome.hits += 1;
                        // The answer names its key; a key the call did
                        // not ask for is a wrong answer too.
                        match names.iter().position(|&name| name == item.key) {
                            Some(at) => {
                                verifier.check(names[at], &value, floors[at]);
                            }
                            None => {
                                let asked = names.get(index).copied().unwrap_or_default();
                                verifier.check(asked, &value, floors[index.min(floors.len() - 1)]);
                            }
                        }
                    }
                    Ok(None) => outcome.misses += 1,
                    Err(_) => outcome.refused += 1,
                }
            }
        }
        Op::SetMany => {
            let writes: Vec<Write> = keys.iter().map(|&key| verifier.begin_write(key)).collect();
            let values: Vec<Vec<u8>> = writes
                .iter()
                .zip(&names)
                .zip(keys)
                .map(|((write, name), &key)| verifier.value(name, write, data.value_len(key)))
                .collect();
            let items: Vec<(&str, &[u8])> = names
                .iter()
                .zip(&values)
                .map(|(&name, value)| (name, value.as_slice()))
                .collect();
            end_many(
                verifier,
                writes,
                &names,
                calls.set_many(&items),
                &mut outcome,
            )?;
        }
        Op::DeleteMany => {
            let writes: Vec<Write> = keys.iter().map(|&key| verifier.begin_write(key)).collect();
            end_many(
                verifier,
                writes,
                &names,
                calls.delete_many(&names),
                &mut outcome,
            )?;
        }
        _ => {
            // touch: the value stays what it was; nothing to record.
            let there = calls.touch(names[0], super::calls::TOUCH_TTL)?;
            outcome.hits += u64::from(there);
            outcome.misses += u64::from(!there);
        }
    }
    Ok(outcome)
}

/// Ends the writes of a multi-key call from its per-key results.
fn end_many(
    verifier: &Verifier,
    writes: Vec<Write>,
    names: &[&str],
    results: Result<Vec<ItemResult<()>>, Error>,
    outcome: &mut Outcome,
) -> Result<(), Error> {
    let items = match results {
        Ok(items) => items,
        Err(e) => {
            for write in writes {
                verifier.end_write(write, Landed::Unknown);
            }
            return Err(e);
        }
    };
    outcome.refused += items.iter().filter(|item| item.result.is_err()).count() as u64;
    for (index, (write, name)) in writes.into_iter().zip(names).enumerate() {
        verifier.end_write(write, landed(&items, index, name));
    }
    Ok(())
}

/// What a multi-key write did to key `name`, asked for at `index`: its
/// answer is there in the same order (looked for by name should a server
/// answer out of order). A key refused on its own, or not answered, is
/// unknown rather than not written: in a cluster a refusal can come from
/// one replica after another took the value.
pub fn landed(items: &[ItemResult<()>], index: usize, name: &str) -> Landed {
    let item = match items.get(index) {
        Some(item) if item.key == name => Some(item),
        _ => items.iter().find(|item| item.key == name),
    };
    match item {
        Some(item) if item.result.is_ok() => Landed::Yes,
        _ => Landed::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(verifier: &Verifier, key: usize) -> (Write, Vec<u8>) {
        let write = verifier.begin_write(key);
        let value = verifier.value(&format!("k{key}"), &write, 64);
        (write, value)
    }

    #[test]
    fn a_value_describes_itself_and_any_damage_shows() {
        let value = encode(7, 42, "bench:12", 100);
        assert_eq!(value.len(), 100);
        let found = decode(&value).expect("a sound value");
        assert_eq!((found.run, found.seq, found.key), (7, 42, &b"bench:12"[..]));
        for at in 0..value.len() {
            let mut damaged = value.clone();
            damaged[at] ^= 0x20;
            assert!(decode(&damaged).is_none(), "a flip at {at} passed");
        }
        assert!(decode(&value[..99]).is_none(), "a truncated value passed");
        assert!(decode(b"").is_none());
        // Too small a size still makes a whole value.
        assert!(decode(&encode(7, 42, "bench:12", 3)).is_some());
        assert_eq!(min_value_size(8), 38);
    }

    #[test]
    fn reads_are_judged_by_key_sequence_and_run() {
        let verifier = Verifier::new(3, 1);
        let (w0, v0) = written(&verifier, 0);
        verifier.end_write(w0, Landed::Yes);
        let (w1, v1) = written(&verifier, 1);
        verifier.end_write(w1, Landed::Yes);
        let floor = verifier.floor(0);
        assert_eq!(verifier.check("k0", &v0, floor), Verdict::Sound);
        assert_eq!(verifier.check("k0", &v1, floor), Verdict::WrongKey);
        assert_eq!(verifier.check("k0", b"garbage", floor), Verdict::Corrupt);
        let never = encode(1, 1000, "k0", 64);
        assert_eq!(verifier.check("k0", &never, floor), Verdict::Impossible);
        let other_run = encode(2, 1, "k0", 64);
        assert_eq!(verifier.check("k0", &other_run, floor), Verdict::Impossible);
        // Key 2 was never written by this run: what was there before is
        // not judged.
        let before = encode(2, 1, "k2", 64);
        assert_eq!(
            verifier.check("k2", &before, verifier.floor(2)),
            Verdict::Unjudged
        );
        let json = verifier.json();
        assert_eq!(
            (
                json.checked,
                json.wrong_key,
                json.corrupt,
                json.impossible,
                json.failures
            ),
            (5, 1, 1, 2, 4)
        );
        assert!(json.first_failure.is_some_and(|first| first.contains("k1")));
    }

    /// A write of key 0 begun and ended as `how`: the value it wrote.
    fn write(verifier: &Verifier, how: Landed) -> Vec<u8> {
        let (write, value) = written(verifier, 0);
        verifier.end_write(write, how);
        value
    }

    /// The verdict on reading `value` as key 0 now.
    fn judge(verifier: &Verifier, value: &[u8]) -> Verdict {
        verifier.check("k0", value, verifier.floor(0))
    }

    #[test]
    fn a_value_replaced_by_a_later_write_is_stale_once_that_write_is_acknowledged() {
        let verifier = Verifier::new(1, 1);
        let old = write(&verifier, Landed::Yes);
        let (second, new) = written(&verifier, 0);
        // In flight: the old value may still be read.
        assert_eq!(judge(&verifier, &old), Verdict::Sound);
        verifier.end_write(second, Landed::Yes);
        assert_eq!(judge(&verifier, &old), Verdict::Stale);
        assert_eq!(judge(&verifier, &new), Verdict::Sound);
    }

    #[test]
    fn overlapping_writes_of_a_key_may_land_in_either_order() {
        let verifier = Verifier::new(1, 1);
        let (a, value_a) = written(&verifier, 0);
        let (b, value_b) = written(&verifier, 0);
        // b is acknowledged first, a later: the server may hold either.
        verifier.end_write(b, Landed::Yes);
        verifier.end_write(a, Landed::Yes);
        assert_eq!(judge(&verifier, &value_a), Verdict::Sound);
        assert_eq!(judge(&verifier, &value_b), Verdict::Sound);
        // A write alone after both replaces both.
        let value_c = write(&verifier, Landed::Yes);
        assert_eq!(judge(&verifier, &value_a), Verdict::Stale);
        assert_eq!(judge(&verifier, &value_b), Verdict::Stale);
        assert_eq!(judge(&verifier, &value_c), Verdict::Sound);
    }

    #[test]
    fn writes_that_did_not_land_or_may_land_later_replace_nothing() {
        let verifier = Verifier::new(1, 1);
        let old = write(&verifier, Landed::Yes);
        // A set-if-absent on the present key: nothing written.
        write(&verifier, Landed::No);
        // The write after it replaces the old value, as usual.
        write(&verifier, Landed::Unknown);
        assert_eq!(judge(&verifier, &old), Verdict::Sound);
        // The failed write may still land: no later write of the key can
        // call anything stale.
        write(&verifier, Landed::Yes);
        assert_eq!(judge(&verifier, &old), Verdict::Sound);
    }

    #[test]
    fn concurrent_writers_and_readers_never_see_a_false_failure() {
        use tiny_cache_client::server::Server;
        use tiny_cache_client::Client;
        let server = Server::local().unwrap();
        let client = Client::new(&server.address()).unwrap();
        let data = Data::new(
            "v:",
            4,
            super::super::workload::ValueSize { min: 64, max: 64 },
            1,
        );
        let verifier = Verifier::new(4, 9);
        std::thread::scope(|scope| {
            for thread in 0..6 {
                let (client, data, verifier) = (&client, &data, &verifier);
                scope.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(thread);
                    for _ in 0..300 {
                        let op = match rng.u8(0..10) {
                            0..=4 => Op::Get,
                            5..=7 => Op::Set,
                            8 => Op::GetMany,
                            _ => Op::Delete,
                        };
                        let keys: Vec<usize> = if op == Op::GetMany {
                            vec![0, 1, 2, 3]
                        } else {
                            vec![rng.usize(0..4)]
                        };
                        perform(client, verifier, data, op, &keys).unwrap();
                    }
                });
            }
        });
        let json = verifier.json();
        assert!(json.checked > 100, "{json:?}");
        assert_eq!(json.failures, 0, "{json:?}");
    }
}
