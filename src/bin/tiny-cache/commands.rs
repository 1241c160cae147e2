//! The commands that talk to a server: one call each, printed as text or as
//! one JSON object (`--json`) whose field names are part of the tool's
//! interface (README lists them; tests/cli.rs holds them to it).
//!
//! In JSON, a field that does not apply is left out rather than `null`
//! (`value` of a missing key, `error` of an item the server accepted).

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;
use tiny_cache_client::cluster::{Cluster, ServerResult};
use tiny_cache_client::{
    CacheStore, CasOutcome, Client, Code, Error, ItemResult, ServingStatus, Stats, Ttl, DEFAULT_TTL,
};

use crate::values::{CasInput, Format, ValueInput, STDIN_MARK};
use crate::{parse_ttl, write_stdout, Exit, Failure, Output};

/// The commands that read, write or ask a server.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Print KEY's value followed by a newline; exit 1 if it is missing.
    Get {
        /// The key to read.
        key: String,
        /// Show the value as utf8, base64 or hex [default: the bytes as
        /// stored; in JSON, utf8 when the value is UTF-8, else base64].
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// Write the value to FILE instead of stdout, with no newline added
        /// (`-`: to stdout, with no newline) [default: stdout, then a
        /// newline].
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Read several keys in one call: one `KEY<TAB>VALUE` line per key
    /// found; exit 1 if any is missing, 7 if the server refused any.
    GetMany {
        /// The keys to read.
        #[arg(value_name = "KEY", required = true)]
        keys: Vec<String>,
        /// Show the values as utf8, base64 or hex [default: as for `get`].
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Store a value under KEY.
    Set {
        /// The key to write.
        key: String,
        #[command(flatten)]
        value: ValueInput,
        #[command(flatten)]
        ttl: TtlArg,
    },
    /// Store a value under KEY only if KEY is missing; exit 4 if it has a
    /// value (which is left as it is).
    SetIfAbsent {
        /// The key to write.
        key: String,
        #[command(flatten)]
        value: ValueInput,
        #[command(flatten)]
        ttl: TtlArg,
    },
    /// Replace KEY's value only if it is EXPECTED; exit 5 if it differs, 6
    /// if KEY is missing (nothing is written then).
    CompareAndSet {
        /// The key to write.
        key: String,
        #[command(flatten)]
        values: CasInput,
        #[command(flatten)]
        ttl: TtlArg,
    },
    /// Store several KEY VALUE pairs (values as text) in one call; exit 7
    /// if the server refused any.
    SetMany {
        /// Keys and their values, alternating: KEY VALUE [KEY VALUE]...
        #[arg(value_names = ["KEY", "VALUE"], required = true, num_args = 2..)]
        pairs: Vec<String>,
        #[command(flatten)]
        ttl: TtlArg,
    },
    /// Give KEY a new TTL without changing its value (read, then written
    /// back by compare-and-set); exit 1 if KEY is missing.
    Touch {
        /// The key to touch.
        key: String,
        #[command(flatten)]
        ttl: TtlArg,
    },
    /// Remove KEY; removing a missing key succeeds.
    Delete {
        /// The key to remove.
        key: String,
    },
    /// Remove several keys in one call (missing ones succeed); exit 7 if
    /// the server refused any.
    DeleteMany {
        /// The keys to remove.
        #[arg(value_name = "KEY", required = true)]
        keys: Vec<String>,
    },
    /// Print every counter and limit of the server.
    Stats,
    /// Ask the server whether it answers and print the round trip.
    Ping,
    /// Ask the server's standard gRPC health service about SERVICE and
    /// print its status; exit 8 unless it is SERVING.
    Health {
        /// The service to ask about: empty for the whole server, or
        /// cache.CacheService.
        #[arg(default_value = "")]
        service: String,
    },
}

/// `--ttl` of the write commands.
#[derive(Debug, Args)]
pub struct TtlArg {
    /// Time to live in seconds (fractions round up); `never` or 0 mean
    /// never expire [default: the client's default TTL, 3600].
    #[arg(long, value_name = "SECS", value_parser = parse_ttl, allow_hyphen_values = true)]
    ttl: Option<Ttl>,
}

impl TtlArg {
    /// The TTL to send, and the wire's seconds for the JSON output (0 is
    /// never).
    fn resolve(&self) -> Result<(Ttl, i32), Failure> {
        let ttl = self.ttl.unwrap_or(Ttl::After(DEFAULT_TTL));
        Ok((ttl, ttl.wire_seconds()?))
    }
}

/// A read value, `get`'s object and each item of `get-many`.
#[derive(Debug, Serialize)]
struct ValueJson<'a> {
    key: &'a str,
    found: bool,
    /// How `value` (or the file) encodes the bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<Format>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    /// The value's length in bytes, as stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<usize>,
    /// `get --output FILE`: where the value was written instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    output: Option<&'a Path>,
    /// Why the server refused this key (`get-many`).
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl<'a> ValueJson<'a> {
    fn missing(key: &'a str) -> ValueJson<'a> {
        ValueJson {
            key,
            found: false,
            format: None,
            value: None,
            bytes: None,
            output: None,
            error: None,
        }
    }

    /// A found value shown in `format`, or in the format that fits it.
    fn found(key: &'a str, value: &[u8], format: Option<Format>) -> Result<Self, Failure> {
        let format = format.unwrap_or_else(|| Format::fitting(value));
        Ok(ValueJson {
            format: Some(format),
            value: Some(format.encode(key, value)?),
            bytes: Some(value.len()),
            found: true,
            ..ValueJson::missing(key)
        })
    }
}

/// `get-many`'s object.
#[derive(Debug, Serialize)]
struct GetManyJson<'a> {
    items: Vec<ValueJson<'a>>,
}

/// What a single-key write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum WriteOutcome {
    /// The value was written.
    Stored,
    /// `set-if-absent`: the key has a value already.
    Exists,
    /// `compare-and-set`: the current value is not the expected one.
    Mismatch,
    /// `compare-and-set`: the key is missing.
    NotFound,
}

impl WriteOutcome {
    /// A write that did not happen, as its exit status and note.
    fn failure(self, key: &str) -> Option<Failure> {
        let (exit, why) = match self {
            WriteOutcome::Stored => return None,
            WriteOutcome::Exists => (Exit::Exists, format!("{key:?} already has a value")),
            WriteOutcome::Mismatch => (Exit::Mismatch, format!("{key:?} holds another value")),
            WriteOutcome::NotFound => (Exit::CasNotFound, format!("no key {key:?}")),
        };
        Some(Failure::outcome(exit, format!("not written: {why}")))
    }
}

/// The object of `set`, `set-if-absent` and `compare-and-set`.
#[derive(Debug, Serialize)]
struct WriteJson<'a> {
    key: &'a str,
    /// Whether the value was written.
    stored: bool,
    outcome: WriteOutcome,
    /// The new value's length in bytes.
    bytes: usize,
    /// The TTL sent, in whole seconds; 0 is never expire.
    ttl_seconds: i32,
}

/// `set-many`'s object.
#[derive(Debug, Serialize)]
struct SetManyJson {
    ttl_seconds: i32,
    items: Vec<StoredItemJson>,
}

#[derive(Debug, Serialize)]
struct StoredItemJson {
    key: String,
    stored: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// `touch`'s object.
#[derive(Debug, Serialize)]
struct TouchedJson<'a> {
    key: &'a str,
    /// False when the key was missing: nothing was written.
    touched: bool,
    /// The new TTL in seconds, 0 for never.
    ttl_seconds: i32,
}

/// `delete`'s object, and each item of `delete-many`'s.
#[derive(Debug, Serialize)]
struct DeletedJson {
    key: String,
    /// True also when the key was already missing: deleting is idempotent.
    deleted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct DeleteManyJson {
    items: Vec<DeletedJson>,
}

/// `stats`'s object: the server's counters and limits under the proto's
/// field names (the reference CLI's and `/stats`'s names too).
#[derive(Debug, Serialize)]
struct StatsJson {
    size: u64,
    hits: u64,
    misses: u64,
    /// `null` when the server sends no finite number.
    hit_rate: Option<f64>,
    evictions: u64,
    lru_evictions: u64,
    expired_removals: u64,
    rejected_oversize: u64,
    rejected_capacity: u64,
    memory_usage_bytes: u64,
    max_memory_bytes: u64,
    max_items: u64,
    max_value_bytes: u64,
}

/// What each `stats` field means, in the table's order.
const STATS_MEANINGS: [(&str, &str); 13] = [
    ("size", "live entries"),
    ("hits", "reads that found a live entry"),
    ("misses", "reads that found nothing"),
    ("hit_rate", "hits / (hits + misses)"),
    ("evictions", "entries removed for room or expiry"),
    ("lru_evictions", "entries evicted as least recently used"),
    (
        "expired_removals",
        "entries removed because their TTL ran out",
    ),
    (
        "rejected_oversize",
        "writes refused: entry over the per-entry limit",
    ),
    (
        "rejected_capacity",
        "writes refused: entry could not fit the limits",
    ),
    ("memory_usage_bytes", "bytes accounted to live entries"),
    ("max_memory_bytes", "memory limit"),
    ("max_items", "item limit"),
    ("max_value_bytes", "per-entry size limit"),
];

impl StatsJson {
    fn new(stats: &Stats) -> StatsJson {
        StatsJson {
            size: count(stats.size),
            hits: count(stats.hits),
            misses: count(stats.misses),
            hit_rate: Some(stats.hit_rate).filter(|rate| rate.is_finite()),
            evictions: count(stats.evictions),
            lru_evictions: count(stats.lru_evictions),
            expired_removals: count(stats.expired_removals),
            rejected_oversize: count(stats.rejected_oversize),
            rejected_capacity: count(stats.rejected_capacity),
            memory_usage_bytes: count(stats.memory_usage_bytes),
            max_memory_bytes: count(stats.max_memory_bytes),
            max_items: count(stats.max_items),
            max_value_bytes: count(stats.max_value_bytes),
        }
    }

    /// An aligned three-column table: name, value, meaning.
    fn table(&self) -> Result<String, Failure> {
        let fields = serde_json::to_value(self)
            .map_err(|e| Failure::Other(format!("cannot tabulate the stats: {e}")))?;
        let rows: Vec<(&str, String, &str)> = STATS_MEANINGS
            .iter()
            .map(|&(name, meaning)| {
                let value = match fields.get(name) {
                    Some(serde_json::Value::Number(n)) if n.is_f64() => {
                        format!("{:.4}", n.as_f64().unwrap_or(f64::NAN))
                    }
                    Some(value) => value.to_string(),
                    None => "?".to_owned(),
                };
                (name, value, meaning)
            })
            .collect();
        let name_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
        let value_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
        Ok(rows
            .iter()
            .map(|(name, value, meaning)| {
                format!("{name:<name_width$}  {value:>value_width$}  {meaning}\n")
            })
            .collect())
    }
}

/// A counter as `u64`, whatever integer type the stats message uses (a
/// negative one, which no sane server sends, reads as 0).
fn count<T: TryInto<u64>>(n: T) -> u64 {
    n.try_into().unwrap_or(0)
}

/// `ping`'s object.
#[derive(Debug, Serialize)]
struct PingJson<'a> {
    server: &'a str,
    round_trip_ms: f64,
}

/// `health`'s object.
#[derive(Debug, Serialize)]
struct HealthJson<'a> {
    service: &'a str,
    /// The health protocol's name: SERVING, NOT_SERVING, UNKNOWN, or
    /// SERVICE_UNKNOWN for a service the server does not know.
    status: &'static str,
    serving: bool,
}

impl DataCommand {
    /// Runs the command with `client` (of the server at `address`, or of
    /// a cluster) and prints its result.
    pub fn run(self, target: Target<'_>, address: &str, out: Output) -> Result<(), Failure> {
        let cluster = match target {
            Target::Many(cluster) => Some(cluster),
            Target::One(_) => None,
        };
        match (self, cluster) {
            (DataCommand::Stats, Some(cluster)) => cluster_stats(cluster, out),
            (DataCommand::Ping, Some(cluster)) => cluster_ping(cluster, out),
            (DataCommand::Health { .. }, Some(_)) => Err(Failure::Usage(
                "health asks one server: give --server once".into(),
            )),
            (command, _) => command.run_one(target, address, out),
        }
    }

    fn run_one(self, target: Target<'_>, address: &str, out: Output) -> Result<(), Failure> {
        let client = target.store();
        match self {
            DataCommand::Get {
                key,
                format,
                output,
            } => get(client, &key, format, output.as_deref(), out),
            DataCommand::GetMany { keys, format } => get_many(client, &keys, format, out),
            DataCommand::Set { key, value, ttl } => {
                let value = value.read()?;
                let (ttl, ttl_seconds) = ttl.resolve()?;
                client.set_with_ttl(&key, &value, ttl)?;
                written(&key, WriteOutcome::Stored, value.len(), ttl_seconds, out)
            }
            DataCommand::SetIfAbsent { key, value, ttl } => {
                let value = value.read()?;
                let (ttl, ttl_seconds) = ttl.resolve()?;
                let outcome = if client.set_if_absent_with_ttl(&key, &value, ttl)? {
                    WriteOutcome::Stored
                } else {
                    WriteOutcome::Exists
                };
                written(&key, outcome, value.len(), ttl_seconds, out)
            }
            DataCommand::CompareAndSet { key, values, ttl } => {
                let (expected, value) = values.read()?;
                let (ttl, ttl_seconds) = ttl.resolve()?;
                let outcome = match client.compare_and_set_with_ttl(&key, &expected, &value, ttl)? {
                    CasOutcome::Stored => WriteOutcome::Stored,
                    CasOutcome::Mismatch => WriteOutcome::Mismatch,
                    CasOutcome::NotFound => WriteOutcome::NotFound,
                };
                written(&key, outcome, value.len(), ttl_seconds, out)
            }
            DataCommand::SetMany { pairs, ttl } => set_many(client, &pairs, &ttl, out),
            DataCommand::Touch { key, ttl } => {
                let (ttl, ttl_seconds) = ttl.resolve()?;
                let touched = client.touch(&key, ttl)?;
                if out.json {
                    out.object(&TouchedJson {
                        key: &key,
                        touched,
                        ttl_seconds,
                    })?;
                }
                if touched {
                    Ok(())
                } else {
                    Err(Failure::outcome(
                        Exit::Missing,
                        format!("not found: {key:?}"),
                    ))
                }
            }
            DataCommand::Delete { key } => {
                client.delete(&key)?;
                if out.json {
                    out.object(&DeletedJson {
                        key,
                        deleted: true,
                        error: None,
                    })?;
                }
                Ok(())
            }
            DataCommand::DeleteMany { keys } => {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                let results = client.delete_many(&keys)?;
                let (items, refused) = per_item(results, |key, error| DeletedJson {
                    deleted: error.is_none(),
                    key,
                    error,
                });
                if out.json {
                    out.object(&DeleteManyJson { items })?;
                }
                refused_outcome(refused)
            }
            DataCommand::Stats => {
                let stats = StatsJson::new(&one(target)?.stats()?);
                if out.json {
                    out.object(&stats)
                } else {
                    write_stdout(stats.table()?.as_bytes())
                }
            }
            DataCommand::Ping => {
                let round_trip_ms = one(target)?.ping()?.as_secs_f64() * 1e3;
                if out.json {
                    out.object(&PingJson {
                        server: address,
                        // Microsecond resolution is all a round trip means.
                        round_trip_ms: (round_trip_ms * 1e3).round() / 1e3,
                    })
                } else {
                    write_stdout(
                        format!("pong from {address} in {round_trip_ms:.3} ms\n").as_bytes(),
                    )
                }
            }
            DataCommand::Health { service } => health(one(target)?, &service, out),
        }
    }
}

/// What a data command talks to: one server's client, or a cluster when
/// `--server` is given several times (or `--replicas` asks for copies).
/// The data operations go through the store trait both implement; only
/// the server-level commands (stats, ping, health) tell them apart.
#[derive(Clone, Copy)]
pub enum Target<'a> {
    One(&'a Client),
    Many(&'a Cluster),
}

impl<'a> Target<'a> {
    fn store(self) -> &'a dyn CacheStore {
        match self {
            Target::One(client) => client,
            Target::Many(cluster) => cluster,
        }
    }
}

/// The single server's client, for the commands that ask one server.
fn one(target: Target<'_>) -> Result<&Client, Failure> {
    match target {
        Target::One(client) => Ok(client),
        Target::Many(_) => Err(Failure::Usage("this command asks one server".into())),
    }
}

/// `stats --json` over several servers.
#[derive(Debug, Serialize)]
struct ClusterStatsJson {
    servers: Vec<ServerStatsJson>,
}

#[derive(Debug, Serialize)]
struct ServerStatsJson {
    server: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    stats: Option<StatsJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Every server's counters; exits 3 after printing them if any failed.
fn cluster_stats(cluster: &Cluster, out: Output) -> Result<(), Failure> {
    let answers = cluster.stats();
    let mut text = String::new();
    let mut servers = Vec::with_capacity(answers.len());
    for ServerResult { server, result } in &answers {
        text.push_str(&format!("== {server}\n"));
        let (stats, error) = match result {
            Ok(stats) => (Some(StatsJson::new(stats)), None),
            Err(error) => (None, Some(error.to_string())),
        };
        match (&stats, &error) {
            (Some(stats), _) => text.push_str(&stats.table()?),
            (_, Some(error)) => text.push_str(&format!("error: {error}\n")),
            _ => {}
        }
        servers.push(ServerStatsJson {
            server: server.clone(),
            stats,
            error,
        });
    }
    if out.json {
        out.object(&ClusterStatsJson { servers })?;
    } else {
        write_stdout(text.as_bytes())?;
    }
    first_failure(answers)
}

/// `ping --json` over several servers.
#[derive(Debug, Serialize)]
struct ClusterPingJson<'a> {
    servers: Vec<PingJson<'a>>,
}

/// Pings every server; exits 3 after printing if any failed.
fn cluster_ping(cluster: &Cluster, out: Output) -> Result<(), Failure> {
    let answers = cluster.ping();
    let mut text = String::new();
    let mut servers = Vec::new();
    for ServerResult { server, result } in &answers {
        match result {
            Ok(round_trip) => {
                let round_trip_ms = round_trip.as_secs_f64() * 1e3;
                text.push_str(&format!("pong from {server} in {round_trip_ms:.3} ms\n"));
                servers.push(PingJson {
                    server,
                    round_trip_ms: (round_trip_ms * 1e3).round() / 1e3,
                });
            }
            Err(error) => text.push_str(&format!("no answer from {server}: {error}\n")),
        }
    }
    if out.json {
        out.object(&ClusterPingJson { servers })?;
    } else {
        write_stdout(text.as_bytes())?;
    }
    first_failure(answers)
}

fn first_failure<T>(answers: Vec<ServerResult<T>>) -> Result<(), Failure> {
    match answers.into_iter().find_map(|answer| answer.result.err()) {
        Some(error) => Err(Failure::Client(error)),
        None => Ok(()),
    }
}

fn get(
    client: &dyn CacheStore,
    key: &str,
    format: Option<Format>,
    output: Option<&Path>,
    out: Output,
) -> Result<(), Failure> {
    let Some(value) = client.get(key)? else {
        if out.json {
            out.object(&ValueJson::missing(key))?;
        }
        return Err(Failure::outcome(
            Exit::Missing,
            format!("not found: {key:?}"),
        ));
    };
    let to_stdout = output.is_none_or(|path| path.as_os_str() == STDIN_MARK);
    if out.json && to_stdout {
        return out.object(&ValueJson::found(key, &value, format)?);
    }
    let mut bytes = match format {
        Some(format) => format.encode(key, &value)?.into_bytes(),
        None => value.to_vec(),
    };
    match output {
        Some(path) if !to_stdout => {
            std::fs::write(path, &bytes).map_err(|e| {
                Failure::Other(format!("cannot write the value to {}: {e}", path.display()))
            })?;
            if out.json {
                out.object(&ValueJson {
                    format,
                    bytes: Some(value.len()),
                    output: Some(path),
                    found: true,
                    ..ValueJson::missing(key)
                })?;
            }
            Ok(())
        }
        // `--output -`: the bytes alone, for a binary-safe pipe.
        Some(_) => write_stdout(&bytes),
        None => {
            bytes.push(b'\n');
            write_stdout(&bytes)
        }
    }
}

fn get_many(
    client: &dyn CacheStore,
    keys: &[String],
    format: Option<Format>,
    out: Output,
) -> Result<(), Failure> {
    let asked: Vec<&str> = keys.iter().map(String::as_str).collect();
    let results = client.get_many(&asked)?;
    let mut items = Vec::with_capacity(results.len());
    let mut lines = Vec::new();
    let (mut notes, mut missing, mut refused) = (Vec::new(), false, false);
    for (asked, result) in keys.iter().zip(&results) {
        // The server answers in request order; the key asked for is the
        // one to print, borrowed for the JSON.
        match &result.result {
            Ok(Some(value)) => {
                if out.json {
                    items.push(ValueJson::found(asked, value, format)?);
                } else {
                    lines.extend_from_slice(asked.as_bytes());
                    lines.push(b'\t');
                    match format {
                        Some(format) => {
                            lines.extend_from_slice(format.encode(asked, value)?.as_bytes())
                        }
                        None => lines.extend_from_slice(value),
                    }
                    lines.push(b'\n');
                }
            }
            Ok(None) => {
                missing = true;
                items.push(ValueJson::missing(asked));
                notes.push(format!("not found: {asked:?}"));
            }
            Err(error) => {
                refused = true;
                let error = item_text(error);
                notes.push(format!("error: {asked:?}: {error}"));
                items.push(ValueJson {
                    error: Some(error),
                    ..ValueJson::missing(asked)
                });
            }
        }
    }
    if out.json {
        out.object(&GetManyJson { items })?;
    } else {
        write_stdout(&lines)?;
    }
    match (refused, missing) {
        (true, _) => Err(Failure::Outcome {
            exit: Exit::ItemsRefused,
            notes,
        }),
        (false, true) => Err(Failure::Outcome {
            exit: Exit::Missing,
            notes,
        }),
        (false, false) => Ok(()),
    }
}

/// Prints what a single-key write did and turns a write that did not
/// happen into its exit status.
fn written(
    key: &str,
    outcome: WriteOutcome,
    bytes: usize,
    ttl_seconds: i32,
    out: Output,
) -> Result<(), Failure> {
    if out.json {
        out.object(&WriteJson {
            key,
            stored: outcome == WriteOutcome::Stored,
            outcome,
            bytes,
            ttl_seconds,
        })?;
    }
    outcome.failure(key).map_or(Ok(()), Err)
}

fn set_many(
    client: &dyn CacheStore,
    pairs: &[String],
    ttl: &TtlArg,
    out: Output,
) -> Result<(), Failure> {
    if pairs.len() % 2 != 0 {
        return Err(Failure::Usage(format!(
            "set-many takes KEY VALUE pairs; got {} arguments",
            pairs.len()
        )));
    }
    let (ttl, ttl_seconds) = ttl.resolve()?;
    let items: Vec<(&str, &[u8])> = pairs
        .chunks_exact(2)
        .map(|pair| (pair[0].as_str(), pair[1].as_bytes()))
        .collect();
    let results = client.set_many_with_ttl(&items, ttl)?;
    let (items, refused) = per_item(results, |key, error| StoredItemJson {
        stored: error.is_none(),
        key,
        error,
    });
    if out.json {
        out.object(&SetManyJson { ttl_seconds, items })?;
    }
    refused_outcome(refused)
}

/// Each item of a multi-key write as its JSON, and the lines naming the
/// items the server refused.
fn per_item<T>(
    results: Vec<ItemResult<()>>,
    item: impl Fn(String, Option<String>) -> T,
) -> (Vec<T>, Vec<String>) {
    let mut refused = Vec::new();
    let items = results
        .into_iter()
        .map(|result| {
            let error = result.result.err().map(|e| item_text(&e));
            if let Some(error) = &error {
                refused.push(format!("error: {:?}: {error}", result.key));
            }
            item(result.key, error)
        })
        .collect();
    (items, refused)
}

/// What to print for one refused item: the server's own words when it
/// refused the item, the whole error otherwise (a cluster's server down).
fn item_text(error: &Error) -> String {
    match error {
        Error::InvalidArgument(text) | Error::ResourceExhausted(text) => text.text().to_owned(),
        other => other.to_string(),
    }
}

/// Exit 7 when the server refused any item of a multi-key write.
fn refused_outcome(refused: Vec<String>) -> Result<(), Failure> {
    if refused.is_empty() {
        Ok(())
    } else {
        Err(Failure::Outcome {
            exit: Exit::ItemsRefused,
            notes: refused,
        })
    }
}

fn health(client: &Client, service: &str, out: Output) -> Result<(), Failure> {
    let status = match client.health_check(service) {
        Ok(status) => status.as_str(),
        // The health protocol answers NOT_FOUND for a service it does not
        // know: an answer about the service, not a failure to ask.
        Err(error) if error.code() == Code::NotFound => "SERVICE_UNKNOWN",
        Err(error) => return Err(error.into()),
    };
    let serving = status == ServingStatus::Serving.as_str();
    if out.json {
        out.object(&HealthJson {
            service,
            status,
            serving,
        })?;
    } else {
        write_stdout(format!("{status}\n").as_bytes())?;
    }
    if serving {
        Ok(())
    } else {
        Err(Failure::Outcome {
            exit: Exit::NotServing,
            notes: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stats_field_has_a_meaning_in_the_table() {
        let stats = StatsJson::new(&Stats::default());
        let fields = serde_json::to_value(&stats).expect("stats serialise");
        let names: Vec<&str> = fields
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names.len(), STATS_MEANINGS.len());
        for (name, _) in STATS_MEANINGS {
            assert!(names.contains(&name), "{name} is not a stats field");
        }
        let table = stats.table().expect("a table");
        assert_eq!(table.lines().count(), STATS_MEANINGS.len());
        assert!(table.contains("hit_rate"), "{table}");
    }

    #[test]
    fn counters_of_any_integer_type_read_as_u64() {
        assert_eq!(count(5i32), 5);
        assert_eq!(count(-1i32), 0);
        assert_eq!(count(7u64), 7);
        assert_eq!(count(9i64), 9);
    }
}
