//! What `bench` asks of the server: which operations in which shares
//! (`--mix`), which keys (`--keys`, `--key-distribution`, `--key-prefix`),
//! how large the values are (`--value-size`) and how many keys are written
//! before measuring (`--prefill`). Parsers and samplers only: no I/O.

use std::fmt;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::distr::weighted::WeightedIndex;
use rand::distr::{Alphanumeric, Distribution, Uniform};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Normal, Zipf};

use crate::thousands;

/// Largest value: a write carries its value in one gRPC message, which the
/// client and the reference server cap at 4 MiB.
pub const MAX_VALUE_SIZE_BYTES: usize = 4 * 1024 * 1024;

/// The Zipf exponent of a bare `zipf`: YCSB's "zipfian constant", so runs
/// compare with the numbers people already know.
const DEFAULT_ZIPF_EXPONENT: f64 = 0.99;

/// The standard deviation of a bare `gaussian`, as a fraction of the key
/// count: memtier_benchmark's default (the key range is six deviations
/// wide), so its "gaussian" means the same here.
const DEFAULT_GAUSSIAN_DEVIATION: f64 = 1.0 / 6.0;

/// Draws of a Gaussian outside the key range before one is clamped into
/// it: with the widest deviation allowed (the key count) one draw in three
/// lands inside, so this many misses in a row practically never happens,
/// and a sample still costs a bounded time when it does.
const GAUSSIAN_DRAWS: usize = 32;

/// One kind of call, named as the CLI's subcommands are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    Get,
    Set,
    Delete,
    GetMany,
    SetMany,
    DeleteMany,
    SetIfAbsent,
    CompareAndSet,
    Touch,
}

impl Op {
    /// Every operation, in the order reports list them.
    pub const ALL: [Op; 9] = [
        Op::Get,
        Op::Set,
        Op::Delete,
        Op::GetMany,
        Op::SetMany,
        Op::DeleteMany,
        Op::SetIfAbsent,
        Op::CompareAndSet,
        Op::Touch,
    ];

    /// The name `--mix`, the report and the JSON use.
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Delete => "delete",
            Op::GetMany => "get-many",
            Op::SetMany => "set-many",
            Op::DeleteMany => "delete-many",
            Op::SetIfAbsent => "set-if-absent",
            Op::CompareAndSet => "compare-and-set",
            Op::Touch => "touch",
        }
    }

    /// Whether a call carries `--batch` keys rather than one.
    pub fn is_batch(self) -> bool {
        matches!(self, Op::GetMany | Op::SetMany | Op::DeleteMany)
    }

    /// Whether its answer says if the key was there, so that it counts
    /// towards the hit ratio.
    pub fn looks_up(self) -> bool {
        matches!(
            self,
            Op::Get | Op::GetMany | Op::SetIfAbsent | Op::CompareAndSet | Op::Touch
        )
    }

    /// Whether a pipeline (`--pipeline`) can carry it: the library's
    /// pipelines hold single-key gets and writes, not `touch` or the
    /// multi-key calls.
    pub fn pipelines(self) -> bool {
        matches!(
            self,
            Op::Get | Op::Set | Op::Delete | Op::SetIfAbsent | Op::CompareAndSet
        )
    }

    fn from_name(name: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|op| op.name() == name)
    }

    fn names() -> String {
        Op::ALL.map(Op::name).join(", ")
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `--mix`: the operations a run makes and their weights, in the order
/// given; operations of weight 0 are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    weights: Vec<(Op, f64)>,
}

impl Mix {
    /// Parses `get=80,set=10,get-many=5`: weights are non-negative numbers,
    /// relative to their sum (they need not add up to 100).
    pub fn parse(raw: &str) -> Result<Mix, String> {
        let mut weights: Vec<(Op, f64)> = Vec::new();
        for part in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not OP=WEIGHT (for example get=80)"))?;
            let name = name.trim();
            let op = Op::from_name(name).ok_or_else(|| {
                format!(
                    "unknown operation {name:?}; the operations are {}",
                    Op::names()
                )
            })?;
            let weight: f64 = weight
                .trim()
                .parse()
                .ok()
                .filter(|w: &f64| w.is_finite() && *w >= 0.0)
                .ok_or_else(|| {
                    format!("the weight of {name} must be a number of 0 or more, not {weight:?}")
                })?;
            if weights.iter().any(|&(seen, _)| seen == op) {
                return Err(format!("{name} is given twice"));
            }
            weights.push((op, weight));
        }
        weights.retain(|&(_, weight)| weight > 0.0);
        if weights.is_empty() {
            return Err(
                "the mix sums to 0: give at least one operation a weight above 0 \
                        (for example get=90,set=10)"
                    .to_owned(),
            );
        }
        Ok(Mix { weights })
    }

    /// `--get-ratio R`: gets with weight R, sets with the rest.
    pub fn gets_and_sets(get_ratio: f64) -> Mix {
        let weights = [(Op::Get, get_ratio), (Op::Set, 1.0 - get_ratio)]
            .into_iter()
            .filter(|&(_, weight)| weight > 0.0)
            .collect();
        Mix { weights }
    }

    /// The operations in the mix, in the order given.
    pub fn ops(&self) -> impl Iterator<Item = Op> + '_ {
        self.weights.iter().map(|&(op, _)| op)
    }

    /// `op`'s share of the calls, from 0 to 1.
    pub fn share(&self, op: Op) -> f64 {
        let total: f64 = self.weights.iter().map(|&(_, w)| w).sum();
        self.weights
            .iter()
            .find(|&&(o, _)| o == op)
            .map_or(0.0, |&(_, w)| w / total)
    }

    /// Whether any operation of the mix carries `--batch` keys.
    pub fn has_batches(&self) -> bool {
        self.ops().any(Op::is_batch)
    }

    /// `90% get, 10% set`, as reports say it.
    pub fn describe(&self) -> String {
        self.ops()
            .map(|op| format!("{}% {op}", trim_number(self.share(op) * 100.0)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Draws operations in the mix's proportions.
    pub fn sampler(&self) -> Result<OpSampler, String> {
        let index = WeightedIndex::new(self.weights.iter().map(|&(_, w)| w))
            .map_err(|e| format!("unusable --mix: {e}"))?;
        Ok(OpSampler {
            ops: self.ops().collect(),
            index,
        })
    }
}

/// A number with at most one decimal, and none when it is whole.
fn trim_number(x: f64) -> String {
    let tenths = (x * 10.0).round() / 10.0;
    if tenths.fract() == 0.0 {
        format!("{tenths:.0}")
    } else {
        format!("{tenths:.1}")
    }
}

/// Draws one operation per call.
#[derive(Debug, Clone)]
pub struct OpSampler {
    ops: Vec<Op>,
    index: WeightedIndex<f64>,
}

impl OpSampler {
    pub fn next(&self, rng: &mut SmallRng) -> Op {
        self.ops[self.index.sample(rng)]
    }
}

/// `--key-distribution`: how often each of the `--keys` keys is used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDistribution {
    /// Every key equally often.
    Uniform,
    /// Key i (from 0) with weight 1 / (i + 1)^s: a few hot keys, a long
    /// tail.
    Zipf(f64),
    /// Each thread walks the keys in order, wrapping around, from its own
    /// starting point (its share of the key space).
    Sequential,
    /// Around the middle key, with this standard deviation as a fraction of
    /// the key count.
    Gaussian(f64),
}

impl KeyDistribution {
    /// Parses `uniform`, `zipf`, `zipf:S`, `sequential`, `gaussian` or
    /// `gaussian:F`.
    pub fn parse(raw: &str) -> Result<KeyDistribution, String> {
        let raw = raw.trim();
        let (name, parameter) = match raw.split_once(':') {
            Some((name, parameter)) => (name, Some(parameter.trim())),
            None => (raw, None),
        };
        let number = |what: &str, parameter: &str, valid: fn(f64) -> bool| {
            parameter
                .parse::<f64>()
                .ok()
                .filter(|&x| valid(x))
                .ok_or_else(|| format!("{what}, not {parameter:?}"))
        };
        match (name, parameter) {
            ("uniform", None) => Ok(KeyDistribution::Uniform),
            ("sequential", None) => Ok(KeyDistribution::Sequential),
            ("zipf", None) => Ok(KeyDistribution::Zipf(DEFAULT_ZIPF_EXPONENT)),
            ("zipf", Some(s)) => number(
                "zipf's exponent S must be a number above 0 and at most 10",
                s,
                |s| s > 0.0 && s <= 10.0,
            )
            .map(KeyDistribution::Zipf),
            ("gaussian", None) => Ok(KeyDistribution::Gaussian(DEFAULT_GAUSSIAN_DEVIATION)),
            ("gaussian", Some(f)) => number(
                "gaussian's deviation F is a fraction of the key count, above 0 and at most 1",
                f,
                |f| f > 0.0 && f <= 1.0,
            )
            .map(KeyDistribution::Gaussian),
            ("uniform" | "sequential", Some(_)) => Err(format!("{name} takes no parameter")),
            _ => Err(format!(
                "unknown key distribution {raw:?}; use uniform, zipf:S, sequential or gaussian"
            )),
        }
    }

    /// A sampler over `keys` keys for thread `thread` of `threads`.
    pub fn sampler(self, keys: usize, thread: usize, threads: usize) -> KeySampler {
        let keys = keys.max(1);
        let kind = match self {
            KeyDistribution::Uniform => match Uniform::new(0, keys) {
                Ok(uniform) => SamplerKind::Uniform(uniform),
                Err(_) => SamplerKind::Sequential { next: 0 },
            },
            KeyDistribution::Zipf(s) => match Zipf::new(keys as f64, s) {
                Ok(zipf) => SamplerKind::Zipf(zipf),
                Err(_) => SamplerKind::Sequential { next: 0 },
            },
            KeyDistribution::Sequential => SamplerKind::Sequential {
                next: sequential_start(thread, threads, keys),
            },
            KeyDistribution::Gaussian(fraction) => {
                let mean = (keys as f64 - 1.0) / 2.0;
                match Normal::new(mean, fraction * keys as f64) {
                    Ok(normal) => SamplerKind::Gaussian(normal),
                    Err(_) => SamplerKind::Sequential { next: 0 },
                }
            }
        };
        KeySampler { keys, kind }
    }
}

impl fmt::Display for KeyDistribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDistribution::Uniform => f.write_str("uniform"),
            KeyDistribution::Zipf(s) => write!(f, "zipf:{s}"),
            KeyDistribution::Sequential => f.write_str("sequential"),
            KeyDistribution::Gaussian(fraction) => write!(f, "gaussian:{fraction:.4}"),
        }
    }
}

/// Where thread `thread` of `threads` starts a sequential walk: the start
/// of its share of the keys, so threads do not all hammer the same key.
pub fn sequential_start(thread: usize, threads: usize, keys: usize) -> usize {
    let share = (thread as u128 * keys as u128) / threads.max(1) as u128;
    usize::try_from(share).unwrap_or(0) % keys.max(1)
}

/// Draws key indices, from 0 to the key count (excluded).
#[derive(Debug, Clone)]
pub struct KeySampler {
    keys: usize,
    kind: SamplerKind,
}

#[derive(Debug, Clone)]
enum SamplerKind {
    Uniform(Uniform<usize>),
    Zipf(Zipf<f64>),
    Sequential { next: usize },
    Gaussian(Normal<f64>),
}

impl KeySampler {
    pub fn next(&mut self, rng: &mut SmallRng) -> usize {
        let keys = self.keys;
        match &mut self.kind {
            SamplerKind::Uniform(uniform) => uniform.sample(rng),
            // Zipf draws ranks from 1 to n; rank 1 (the hottest) is key 0.
            SamplerKind::Zipf(zipf) => (zipf.sample(rng) as usize).clamp(1, keys) - 1,
            SamplerKind::Sequential { next } => {
                let key = *next;
                *next = (key + 1) % keys;
                key
            }
            SamplerKind::Gaussian(normal) => {
                let mut x = normal.sample(rng);
                for _ in 1..GAUSSIAN_DRAWS {
                    if (0.0..keys as f64).contains(&x) {
                        break;
                    }
                    x = normal.sample(rng);
                }
                (x.max(0.0) as usize).min(keys - 1)
            }
        }
    }
}

/// The share of the key space the hot set moves by at each rotation: the
/// golden ratio's fraction, so that consecutive hot sets land far apart
/// and many rotations spread over the whole space before any repeats.
const HOT_SET_STRIDE: f64 = 0.618_033_988_749_895;

/// `--hot-set-rotate`: the key a distribution draws is moved by an offset
/// that changes every `every` from `origin`, so the hot keys of interval
/// i are not those of interval i - 1 while the distribution (the shape of
/// who is hot) stays the same.
///
/// The offset of interval i is i times [`HOT_SET_STRIDE`] of the key
/// space, modulo the key count: a rotation of the rank → key mapping, as
/// YCSB's "latest" distribution moves its hot spot, rather than a fresh
/// random permutation, so that the hot keys of an interval stay
/// neighbours (readable in a report) and the mapping costs an addition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HotSet {
    every: Duration,
    origin: Instant,
    keys: usize,
    stride: usize,
}

impl HotSet {
    /// A hot set over `keys` keys moving every `every` from `origin`.
    pub fn new(every: Duration, origin: Instant, keys: usize) -> HotSet {
        let keys = keys.max(1);
        // At least 1 (so that two keys still swap), below the key count
        // (so that a move is never a whole turn).
        let stride = ((keys as f64 * HOT_SET_STRIDE).round() as usize).clamp(1, keys.max(2) - 1);
        HotSet {
            every,
            origin,
            keys,
            stride,
        }
    }

    /// Which interval `at` falls in (0 before `origin`).
    pub fn interval(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(since / self.every.as_nanos().max(1)).unwrap_or(u64::MAX)
    }

    /// The offset of interval `interval`.
    pub fn offset(&self, interval: u64) -> usize {
        let keys = self.keys as u128;
        usize::try_from(u128::from(interval) * self.stride as u128 % keys).unwrap_or(0)
    }

    /// Where key `key` (as the distribution drew it) is in `interval`.
    pub fn place(&self, key: usize, interval: u64) -> usize {
        (key % self.keys + self.offset(interval)) % self.keys
    }

    /// Where key `key` is at `at`.
    pub fn place_at(&self, key: usize, at: Instant) -> usize {
        self.place(key, self.interval(at))
    }
}

/// `--value-size`: a fixed size, or a range both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueSize {
    pub min: usize,
    pub max: usize,
}

impl ValueSize {
    /// Parses `100`, `64..4096` or `64..=4096` (the same: both ends are
    /// sizes a value can have), each at most [`MAX_VALUE_SIZE_BYTES`].
    pub fn parse(raw: &str) -> Result<ValueSize, String> {
        let bytes = |text: &str| {
            let text = text.trim();
            let n: usize = text
                .parse()
                .map_err(|_| format!("{text:?} is not a number of bytes"))?;
            if n > MAX_VALUE_SIZE_BYTES {
                return Err(format!(
                    "{n} bytes is more than a write carries ({MAX_VALUE_SIZE_BYTES} bytes)"
                ));
            }
            Ok(n)
        };
        let (min, max) = match raw.split_once("..") {
            None => {
                let n = bytes(raw)?;
                (n, n)
            }
            Some((min, max)) => (bytes(min)?, bytes(max.strip_prefix('=').unwrap_or(max))?),
        };
        if min > max {
            return Err(format!(
                "the range {raw:?} is empty: its first size is above its last"
            ));
        }
        Ok(ValueSize { min, max })
    }

    /// The size of key `key`'s value: fixed per key, spread evenly over the
    /// range, so a compare-and-set can expect the value last written.
    pub fn of_key(self, key: usize) -> usize {
        let span = (self.max - self.min) as u64 + 1;
        // span ≤ MAX_VALUE_SIZE_BYTES + 1, so the remainder fits a usize.
        self.min + usize::try_from(mix64(key as u64) % span).unwrap_or(0)
    }

    pub fn is_fixed(self) -> bool {
        self.min == self.max
    }

    /// `100 B` or `64–4,096 B`.
    pub fn describe(self) -> String {
        if self.is_fixed() {
            format!("{} B", thousands(self.min as u64))
        } else {
            format!(
                "{}–{} B",
                thousands(self.min as u64),
                thousands(self.max as u64)
            )
        }
    }
}

impl fmt::Display for ValueSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_fixed() {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..{}", self.min, self.max)
        }
    }
}

/// SplitMix64's finaliser: spreads consecutive key numbers over the whole
/// range of sizes (a hash, not a random draw: a key's size never changes).
fn mix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `--prefill`: how many keys are written before anything is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefill {
    /// Every key: gets hit until something deletes.
    All,
    /// The first N keys (key 0 is the hottest under zipf).
    First(usize),
}

impl Prefill {
    /// Parses `all`, `none` (the same as 0) or a number of keys.
    pub fn parse(raw: &str) -> Result<Prefill, String> {
        match raw.trim() {
            "all" => Ok(Prefill::All),
            "none" => Ok(Prefill::First(0)),
            n => n.parse().map(Prefill::First).map_err(|_| {
                format!("{raw:?} must be all, none or a number of keys to write first")
            }),
        }
    }

    /// How many of `keys` keys are written.
    pub fn count(self, keys: usize) -> usize {
        match self {
            Prefill::All => keys,
            Prefill::First(n) => n.min(keys),
        }
    }
}

/// The keys and values a run uses: key i is `PREFIX` + i, and its value the
/// first `ValueSize::of_key(i)` bytes of one random buffer.
#[derive(Debug)]
pub struct Data {
    pub keys: Vec<String>,
    /// Shared, so that a pipeline's operations, which own their values,
    /// take a slice of it rather than a copy.
    bytes: Bytes,
    size: ValueSize,
}

impl Data {
    pub fn new(prefix: &str, keys: usize, size: ValueSize, seed: u64) -> Data {
        let rng = SmallRng::seed_from_u64(seed);
        Data {
            keys: (0..keys).map(|i| format!("{prefix}{i}")).collect(),
            bytes: rng
                .sample_iter(Alphanumeric)
                .take(size.max)
                .collect::<Vec<u8>>()
                .into(),
            size,
        }
    }

    /// Key `key`'s value.
    pub fn value(&self, key: usize) -> &[u8] {
        &self.bytes[..self.value_len(key)]
    }

    /// Key `key`'s value as an owned handle on the same bytes.
    pub fn shared_value(&self, key: usize) -> Bytes {
        self.bytes.slice(..self.value_len(key))
    }

    /// The size of key `key`'s value.
    pub fn value_len(&self, key: usize) -> usize {
        self.size.of_key(key).min(self.bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_parses_weights_of_every_operation() {
        let mix = Mix::parse(
            "get=80, set=10,get-many=5,set-if-absent=3,compare-and-set=2,delete=0,\
             touch=0.5,set-many=1,delete-many=1",
        )
        .unwrap();
        assert_eq!(
            mix.ops().collect::<Vec<_>>(),
            [
                Op::Get,
                Op::Set,
                Op::GetMany,
                Op::SetIfAbsent,
                Op::CompareAndSet,
                Op::Touch,
                Op::SetMany,
                Op::DeleteMany
            ]
        );
        assert!((mix.share(Op::Get) - 80.0 / 102.5).abs() < 1e-12);
        assert_eq!(mix.share(Op::Delete), 0.0);
        assert!(mix.has_batches());
        assert_eq!(Mix::parse("get=1").unwrap().describe(), "100% get");
    }

    #[test]
    fn mix_refuses_unknown_operations_duplicates_bad_weights_and_a_zero_sum() {
        let unknown = Mix::parse("get=1,fetch=2").unwrap_err();
        assert!(
            unknown.contains("fetch") && unknown.contains("get-many"),
            "{unknown}"
        );
        assert!(Mix::parse("get=1,get=2").unwrap_err().contains("twice"));
        assert!(Mix::parse("get=-1").is_err());
        assert!(Mix::parse("get=NaN").is_err());
        assert!(Mix::parse("get").is_err());
        assert!(Mix::parse("get=0,set=0").unwrap_err().contains("sums to 0"));
        assert!(Mix::parse("").unwrap_err().contains("sums to 0"));
    }

    #[test]
    fn get_ratio_is_a_mix_of_gets_and_sets() {
        let mix = Mix::gets_and_sets(0.9);
        assert_eq!(mix.describe(), "90% get, 10% set");
        assert_eq!(Mix::gets_and_sets(1.0).ops().collect::<Vec<_>>(), [Op::Get]);
    }

    #[test]
    fn sampled_operations_follow_the_weights() {
        let sampler = Mix::parse("get=3,set=1").unwrap().sampler().unwrap();
        let mut rng = SmallRng::seed_from_u64(7);
        let gets = (0..40_000)
            .filter(|_| sampler.next(&mut rng) == Op::Get)
            .count();
        assert!((29_000..31_000).contains(&gets), "{gets}");
    }

    #[test]
    fn distributions_parse_with_and_without_parameters() {
        let parsed = [
            ("uniform", KeyDistribution::Uniform),
            ("zipf:1.2", KeyDistribution::Zipf(1.2)),
            ("zipf", KeyDistribution::Zipf(DEFAULT_ZIPF_EXPONENT)),
            ("sequential", KeyDistribution::Sequential),
            ("gaussian:0.1", KeyDistribution::Gaussian(0.1)),
        ];
        for (text, distribution) in parsed {
            assert_eq!(KeyDistribution::parse(text), Ok(distribution), "{text}");
        }
        for bad in [
            "zipf:0",
            "zipf:-1",
            "zipf:x",
            "gaussian:2",
            "uniform:3",
            "pareto",
        ] {
            assert!(KeyDistribution::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn samplers_stay_in_range_and_have_their_shape() {
        let mut rng = SmallRng::seed_from_u64(1);
        let draws = |d: KeyDistribution, rng: &mut SmallRng| {
            let mut sampler = d.sampler(100, 0, 1);
            (0..20_000).map(|_| sampler.next(rng)).collect::<Vec<_>>()
        };
        for d in [
            KeyDistribution::Uniform,
            KeyDistribution::Zipf(0.99),
            KeyDistribution::Sequential,
            KeyDistribution::Gaussian(1.0),
        ] {
            assert!(draws(d, &mut rng).iter().all(|&k| k < 100), "{d}");
        }
        let zipf = draws(KeyDistribution::Zipf(1.2), &mut rng);
        let hottest = zipf.iter().filter(|&&k| k == 0).count();
        let coldest = zipf.iter().filter(|&&k| k == 99).count();
        assert!(hottest > 20 * coldest.max(1), "{hottest} vs {coldest}");
        let gaussian = draws(KeyDistribution::Gaussian(1.0 / 6.0), &mut rng);
        let middle = gaussian.iter().filter(|&&k| (34..66).contains(&k)).count();
        assert!(middle > 12_000, "{middle} of 20000 within one deviation");
        assert_eq!(draws(KeyDistribution::Sequential, &mut rng)[..3], [0, 1, 2]);
    }

    /// The share of `draws` that fell on each key.
    fn shares(draws: &[usize], keys: usize) -> Vec<f64> {
        let mut counts = vec![0usize; keys];
        for &key in draws {
            counts[key] += 1;
        }
        counts
            .into_iter()
            .map(|n| n as f64 / draws.len() as f64)
            .collect()
    }

    #[test]
    fn a_rotating_hot_set_moves_the_hot_keys_and_keeps_the_zipf_shape() {
        const KEYS: usize = 1000;
        const DRAWS: usize = 200_000;
        let exponent = 1.1;
        let origin = Instant::now();
        let hot = HotSet::new(Duration::from_secs(30), origin, KEYS);
        assert_eq!(hot.interval(origin), 0);
        assert_eq!(hot.interval(origin + Duration::from_secs(29)), 0);
        assert_eq!(hot.interval(origin + Duration::from_secs(61)), 2);
        // Zipf's probability of rank r (from 0): 1/(r+1)^s over the sum.
        let norm: f64 = (1..=KEYS).map(|r| (r as f64).powf(-exponent)).sum();
        let expected = |rank: usize| ((rank + 1) as f64).powf(-exponent) / norm;
        let mut rng = SmallRng::seed_from_u64(3);
        let mut sampler = KeyDistribution::Zipf(exponent).sampler(KEYS, 0, 1);
        let mut hottest_of = Vec::new();
        for interval in 0..4u64 {
            let at = origin + Duration::from_secs(30 * interval + 10);
            let draws: Vec<usize> = (0..DRAWS)
                .map(|_| hot.place_at(sampler.next(&mut rng), at))
                .collect();
            let shares = shares(&draws, KEYS);
            let offset = hot.offset(interval);
            // Within the interval: key (rank + offset) has rank's Zipf
            // share, to within 10 % (about 6 standard errors at rank 9).
            for rank in [0, 1, 2, 9] {
                let key = (rank + offset) % KEYS;
                let (seen, want) = (shares[key], expected(rank));
                assert!(
                    (seen - want).abs() <= want * 0.1,
                    "interval {interval}, rank {rank}: {seen:.4} vs {want:.4}"
                );
            }
            let hottest = (0..KEYS)
                .max_by(|&a, &b| shares[a].total_cmp(&shares[b]))
                .unwrap_or(0);
            assert_eq!(hottest, offset, "interval {interval}");
            // The ten hottest keys of this interval.
            let mut ranked: Vec<usize> = (0..KEYS).collect();
            ranked.sort_by(|&a, &b| shares[b].total_cmp(&shares[a]));
            hottest_of.push(ranked[..10].to_vec());
        }
        // Consecutive intervals share none of their ten hottest keys.
        for pair in hottest_of.windows(2) {
            assert!(
                pair[0].iter().all(|key| !pair[1].contains(key)),
                "{:?} then {:?}",
                pair[0],
                pair[1]
            );
        }
    }

    #[test]
    fn a_hot_set_always_moves_and_stays_in_range() {
        for keys in [1, 2, 3, 10, 1001] {
            let hot = HotSet::new(Duration::from_secs(1), Instant::now(), keys);
            for interval in 0..50 {
                for key in [0, keys / 2, keys - 1] {
                    assert!(hot.place(key, interval) < keys);
                }
                if keys > 1 {
                    assert_ne!(hot.offset(interval), hot.offset(interval + 1), "{keys}");
                }
            }
        }
    }

    #[test]
    fn sequential_threads_start_at_their_share() {
        assert_eq!(sequential_start(0, 4, 100), 0);
        assert_eq!(sequential_start(1, 4, 100), 25);
        assert_eq!(sequential_start(3, 4, 100), 75);
        assert_eq!(sequential_start(5, 8, 3), 1);
        let mut sampler = KeyDistribution::Sequential.sampler(3, 2, 3);
        let mut rng = SmallRng::seed_from_u64(0);
        let walk: Vec<usize> = (0..4).map(|_| sampler.next(&mut rng)).collect();
        assert_eq!(walk, [2, 0, 1, 2]);
    }

    #[test]
    fn value_sizes_are_a_number_or_an_inclusive_range() {
        assert_eq!(
            ValueSize::parse("100"),
            Ok(ValueSize { min: 100, max: 100 })
        );
        assert_eq!(
            ValueSize::parse("64..4096"),
            Ok(ValueSize { min: 64, max: 4096 })
        );
        assert_eq!(
            ValueSize::parse("64..=4096"),
            Ok(ValueSize { min: 64, max: 4096 })
        );
        assert_eq!(ValueSize::parse("0"), Ok(ValueSize { min: 0, max: 0 }));
        assert!(ValueSize::parse("4096..64").unwrap_err().contains("empty"));
        assert!(ValueSize::parse("10..").is_err());
        assert!(ValueSize::parse("-1").is_err());
        assert!(ValueSize::parse(&(MAX_VALUE_SIZE_BYTES + 1).to_string()).is_err());
    }

    #[test]
    fn each_key_keeps_one_size_and_sizes_cover_the_range() {
        let size = ValueSize { min: 10, max: 13 };
        let sizes: Vec<usize> = (0..1000).map(|k| size.of_key(k)).collect();
        assert!(sizes.iter().all(|s| (10..=13).contains(s)));
        for s in 10..=13 {
            assert!(sizes.contains(&s), "{s} never drawn");
        }
        assert_eq!(size.of_key(42), size.of_key(42));
        let data = Data::new("k:", 5, size, 3);
        assert_eq!(data.keys[4], "k:4");
        assert_eq!(data.value(2).len(), size.of_key(2));
    }

    #[test]
    fn prefill_is_all_none_or_a_count() {
        assert_eq!(Prefill::parse("all").map(|p| p.count(10)), Ok(10));
        assert_eq!(Prefill::parse("none").map(|p| p.count(10)), Ok(0));
        assert_eq!(Prefill::parse("4").map(|p| p.count(10)), Ok(4));
        assert_eq!(Prefill::parse("40").map(|p| p.count(10)), Ok(10));
        assert!(Prefill::parse("some").is_err());
    }
}
