//! The `tiny-cache` command-line tool: read and write a tiny-cache server,
//! show its counters, run an embedded server, and benchmark the client.
//!
//! Every failure is one `error: ...` line on stderr and a documented exit
//! status (see [`EXIT_CODES_HELP`]); nothing the user or the server controls
//! can make it panic.

mod bench;
mod chart;
mod usage;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use tiny_cache_client::server::{Server, StoreConfig};
use tiny_cache_client::{
    rules, Client, ClientBuilder, Error, Stats, TlsFailure, Ttl, DEFAULT_ADDRESS,
};

/// `--timeout`'s default, in seconds, as clap shows it; a unit test keeps it
/// equal to the library's `DEFAULT_TIMEOUT`.
const DEFAULT_TIMEOUT_SECS: &str = "30";

/// Where `--help` lists the options every subcommand accepts.
const GLOBAL_HEADING: &str = "Global options";

/// Where `--help` lists the client's TLS options.
const TLS_HEADING: &str = "TLS options (with a grpcs:// --server)";

/// One mebibyte, the unit of `serve --max-memory-mb`.
const MIB_BYTES: u64 = 1024 * 1024;

/// The exit statuses, shown at the end of `--help`.
const EXIT_CODES_HELP: &str = "\
Exit status:
  0  success
  1  `get`: the key is missing (nothing is printed on stdout)
  2  usage error: bad arguments, or input the client refuses before
     sending it (an invalid key, namespace or request id, an unusable
     TLS certificate or key file)
  3  the operation failed: server unreachable, deadline exceeded, an error
     from the server, output that could not be written, or (`bench`)
     setup failing or every measured operation failing";

/// Command-line client, embedded server and benchmark for tiny-cache.
#[derive(Debug, Parser)]
#[command(name = "tiny-cache", version, after_help = EXIT_CODES_HELP)]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand accepts, before or after its name.
#[derive(Debug, Args)]
struct Globals {
    /// Server address: host:port, `[::1]:port` or grpc://host:port, and
    /// grpcs://host:port for TLS (`bench` uses it only when given on the
    /// command line, else it benchmarks an embedded server).
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL_HEADING,
        value_name = "ADDR",
        env = "CACHE_SERVER_ADDRESS",
        default_value = DEFAULT_ADDRESS
    )]
    server: String,

    /// Deadline of each call in seconds, spanning its retries (fractions
    /// allowed).
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL_HEADING,
        value_name = "SECS",
        env = "CACHE_TIMEOUT",
        default_value = DEFAULT_TIMEOUT_SECS,
        value_parser = parse_timeout
    )]
    timeout: Duration,

    /// Key space to work in (x-cache-namespace) [default: the shared key
    /// space].
    #[arg(long, global = true, help_heading = GLOBAL_HEADING, value_name = "NS")]
    namespace: Option<String>,

    /// Correlation id sent as x-request-id with every call [default: none].
    #[arg(long, global = true, help_heading = GLOBAL_HEADING, value_name = "ID")]
    request_id: Option<String>,

    /// TLS (grpcs://): also trust the CA certificate(s) in this PEM file
    /// [default: the built-in public roots only].
    #[arg(long, global = true, help_heading = TLS_HEADING, value_name = "PEM")]
    ca_cert: Option<PathBuf>,

    /// TLS: present this certificate chain (PEM) to the server, for mutual
    /// TLS; needs --client-key.
    #[arg(
        long,
        global = true,
        help_heading = TLS_HEADING,
        value_name = "PEM",
        requires = "client_key"
    )]
    client_cert: Option<PathBuf>,

    /// TLS: the private key (PEM) of --client-cert.
    #[arg(
        long,
        global = true,
        help_heading = TLS_HEADING,
        value_name = "PEM",
        requires = "client_cert"
    )]
    client_key: Option<PathBuf>,

    /// TLS: the name to verify in the server's certificate (and send by
    /// SNI) [default: the host of --server].
    #[arg(long, global = true, help_heading = TLS_HEADING, value_name = "NAME")]
    tls_server_name: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print KEY's value followed by a newline; exit 1 if it is missing.
    Get {
        /// The key to read.
        key: String,
    },
    /// Store VALUE under KEY (use `--` before a VALUE that starts with '-').
    Set {
        /// The key to write.
        key: String,
        /// The value, stored as the argument's UTF-8 bytes.
        value: String,
        /// Time to live in seconds (fractions round up); 0 means never
        /// expire [default: the client's default TTL, 3600].
        #[arg(long, value_name = "SECS", value_parser = parse_ttl, allow_hyphen_values = true)]
        ttl: Option<Ttl>,
    },
    /// Remove KEY; removing a missing key succeeds.
    Delete {
        /// The key to remove.
        key: String,
    },
    /// Print every counter and limit of the server.
    Stats {
        /// Print one JSON object instead of a table [default: table].
        #[arg(long)]
        json: bool,
    },
    /// Ask the server whether it answers and print the round trip.
    Ping,
    /// Run an embedded server in the foreground until killed; prints the
    /// bound address on stdout.
    Serve(ServeArgs),
    /// Benchmark mixed gets and sets from many threads sharing one client.
    Bench(bench::BenchArgs),
}

/// Options of `serve`.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50051")]
    listen: String,
    /// Server runtime worker threads.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_positive)]
    workers: usize,
    /// Most entries kept before least-recently-used ones are evicted.
    #[arg(long, value_name = "N", default_value_t = StoreConfig::default().max_items)]
    max_items: usize,
    /// Most memory accounted to entries, in MiB (value length + 33 bytes
    /// each).
    #[arg(
        long,
        value_name = "N",
        default_value_t = StoreConfig::default().max_memory_bytes / MIB_BYTES
    )]
    max_memory_mb: u64,
    /// Largest single entry in bytes (value length + 33).
    #[arg(long, value_name = "N", default_value_t = StoreConfig::default().max_value_bytes)]
    max_value_bytes: u64,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key. The
    /// printed address is then grpcs://host:port.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates issued by the CA(s) in this PEM file
    /// (mutual TLS); needs --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Also serve the HTTP side port (/health, /ready, /live, /stats,
    /// /metrics) on this address; its http:// URL is printed on a second line.
    #[arg(long, value_name = "ADDR")]
    health_listen: Option<String>,
}

/// Why a command did not succeed; each maps to one exit status.
#[derive(Debug)]
enum Failure {
    /// `get` found nothing: exit 1 with a note, not an error.
    NotFound(String),
    /// The client or the server refused or failed the call.
    Client(Error),
    /// Anything else (output, threads, the benchmark's own checks).
    Other(String),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Client(error)
    }
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::NotFound(_) => 1,
            // The client refused the input before any I/O: the command line
            // is what needs fixing, as with clap's own usage errors.
            Failure::Client(Error::Validation(_))
            | Failure::Client(Error::Tls {
                kind: TlsFailure::InvalidConfiguration,
                ..
            }) => 2,
            Failure::Client(_) | Failure::Other(_) => 3,
        }
    }
}

/// How to build a client, from the global options.
#[derive(Debug, Clone)]
struct ClientSettings {
    timeout: Duration,
    namespace: Option<String>,
    request_id: Option<String>,
    ca_cert: Option<PathBuf>,
    client_identity: Option<(PathBuf, PathBuf)>,
    tls_server_name: Option<String>,
}

impl ClientSettings {
    fn from_globals(globals: &Globals) -> ClientSettings {
        ClientSettings {
            timeout: globals.timeout,
            namespace: globals.namespace.clone(),
            request_id: globals.request_id.clone(),
            ca_cert: globals.ca_cert.clone(),
            client_identity: globals.client_cert.clone().zip(globals.client_key.clone()),
            tls_server_name: globals.tls_server_name.clone(),
        }
    }

    /// A client of `address` with these settings; invalid ones are an
    /// `Error::Validation`.
    fn connect(&self, address: &str) -> Result<Client, Error> {
        self.builder(address).build()
    }

    /// A builder with these settings, for callers that add more.
    fn builder(&self, address: &str) -> ClientBuilder {
        let mut builder = Client::builder(address).timeout(self.timeout);
        if let Some(namespace) = &self.namespace {
            builder = builder.namespace(namespace);
        }
        if let Some(id) = &self.request_id {
            builder = builder.metadata(rules::REQUEST_ID_HEADER, id);
        }
        if let Some(ca) = &self.ca_cert {
            builder = builder.tls_ca_certificate_file(ca);
        }
        if let Some((certificate, key)) = &self.client_identity {
            builder = builder.tls_client_identity_files(certificate, key);
        }
        if let Some(name) = &self.tls_server_name {
            builder = builder.tls_server_name(name);
        }
        builder
    }
}

fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(error) => error.exit(),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    // The global --server may be given before or after the subcommand;
    // either way clap records where its value came from in one of the two.
    let server_given = [Some(&matches), matches.subcommand().map(|(_, sub)| sub)]
        .into_iter()
        .flatten()
        .any(|m| m.value_source("server") == Some(ValueSource::CommandLine));
    match run(cli, server_given) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let line = match &failure {
                Failure::NotFound(note) => note.clone(),
                Failure::Client(error) => format!("error: {error}"),
                Failure::Other(message) => format!("error: {message}"),
            };
            // Nowhere left to report a failure to write stderr.
            let _ = writeln!(std::io::stderr(), "{line}");
            ExitCode::from(failure.exit_code())
        }
    }
}

fn run(cli: Cli, server_given: bool) -> Result<(), Failure> {
    let settings = ClientSettings::from_globals(&cli.globals);
    let address = cli.globals.server.as_str();
    match cli.command {
        Command::Get { key } => {
            let client = settings.connect(address)?;
            match client.get(&key)? {
                Some(value) => {
                    let mut line = Vec::with_capacity(value.len() + 1);
                    line.extend_from_slice(&value);
                    line.push(b'\n');
                    write_stdout(&line)
                }
                None => Err(Failure::NotFound(format!("not found: {key:?}"))),
            }
        }
        Command::Set { key, value, ttl } => {
            let client = settings.connect(address)?;
            match ttl {
                Some(ttl) => client.set_with_ttl(&key, value, ttl)?,
                None => client.set(&key, value)?,
            }
            Ok(())
        }
        Command::Delete { key } => {
            settings.connect(address)?.delete(&key)?;
            Ok(())
        }
        Command::Stats { json } => {
            let stats = settings.connect(address)?.stats()?;
            let text = if json {
                stats_json(&stats)
            } else {
                stats_table(&stats)
            };
            write_stdout(text.as_bytes())
        }
        Command::Ping => {
            let round_trip = settings.connect(address)?.ping()?;
            let millis = round_trip.as_secs_f64() * 1e3;
            write_stdout(format!("pong from {address} in {millis:.3} ms\n").as_bytes())
        }
        Command::Serve(args) => serve(&args),
        Command::Bench(args) => {
            let target = if server_given {
                bench::Target::Remote(address.to_owned())
            } else {
                bench::Target::Embedded
            };
            bench::run(&args, &target, &settings)
        }
    }
}

/// Starts the embedded server and blocks this thread for good: the process
/// ends when it is killed, which also closes the listener.
fn serve(args: &ServeArgs) -> Result<(), Failure> {
    let max_memory_bytes = args.max_memory_mb.checked_mul(MIB_BYTES).ok_or_else(|| {
        Failure::Other(format!(
            "--max-memory-mb {} is too large",
            args.max_memory_mb
        ))
    })?;
    let mut builder = Server::builder()
        .listen(&args.listen)
        .workers(args.workers)
        .max_items(args.max_items)
        .max_memory_bytes(max_memory_bytes)
        .max_value_bytes(args.max_value_bytes);
    if let (Some(certificate), Some(key)) = (&args.tls_cert, &args.tls_key) {
        builder = builder.tls(read_pem(certificate)?, read_pem(key)?);
    }
    if let Some(ca) = &args.client_ca {
        builder = builder.client_ca(read_pem(ca)?);
    }
    if let Some(address) = &args.health_listen {
        builder = builder.health_listen(address);
    }
    let server = builder.start().map_err(Error::from)?;
    // A plain server prints host:port as it always did; a TLS one prints
    // the grpcs:// URL a client needs.
    let printed = if server.is_tls() {
        server.url()
    } else {
        server.address()
    };
    write_stdout(format!("{printed}\n").as_bytes())?;
    if let Some(url) = server.health_url() {
        write_stdout(format!("{url}\n").as_bytes())?;
    }
    let _ = writeln!(
        std::io::stderr(),
        "tiny-cache server listening on {} ({} worker(s)); stop it with Ctrl-C",
        server.address(),
        args.workers
    );
    loop {
        // park() may wake spuriously; nothing ever unparks this thread.
        std::thread::park();
    }
}

/// Reads a PEM file given to `serve`; an unreadable one is a usage error.
fn read_pem(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|error| {
        Failure::Client(Error::Tls {
            kind: TlsFailure::InvalidConfiguration,
            message: format!("cannot read {}: {error}", path.display()),
        })
    })
}

/// Writes `bytes` to stdout and flushes; a closed pipe is a failure, not a
/// panic as `print!` would make it.
fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::Other(format!("cannot write to stdout: {e}")))
}

/// The rows of `stats`: name (the proto field), value, meaning.
fn stats_rows(stats: &Stats) -> Vec<(&'static str, String, &'static str)> {
    vec![
        ("size", stats.size.to_string(), "live entries"),
        (
            "hits",
            stats.hits.to_string(),
            "reads that found a live entry",
        ),
        (
            "misses",
            stats.misses.to_string(),
            "reads that found nothing",
        ),
        (
            "hit_rate",
            // JSON has no NaN; a sane server never sends one anyway.
            if stats.hit_rate.is_finite() {
                format!("{:.4}", stats.hit_rate)
            } else {
                "null".to_owned()
            },
            "hits / (hits + misses)",
        ),
        (
            "evictions",
            stats.evictions.to_string(),
            "entries removed for room or expiry",
        ),
        (
            "lru_evictions",
            stats.lru_evictions.to_string(),
            "entries evicted as least recently used",
        ),
        (
            "expired_removals",
            stats.expired_removals.to_string(),
            "entries removed because their TTL ran out",
        ),
        (
            "rejected_oversize",
            stats.rejected_oversize.to_string(),
            "writes refused: entry over the per-entry limit",
        ),
        (
            "rejected_capacity",
            stats.rejected_capacity.to_string(),
            "writes refused: entry could not fit the limits",
        ),
        (
            "memory_usage_bytes",
            stats.memory_usage_bytes.to_string(),
            "bytes accounted to live entries",
        ),
        (
            "max_memory_bytes",
            stats.max_memory_bytes.to_string(),
            "memory limit",
        ),
        ("max_items", stats.max_items.to_string(), "item limit"),
        (
            "max_value_bytes",
            stats.max_value_bytes.to_string(),
            "per-entry size limit",
        ),
    ]
}

/// `stats` as an aligned three-column table.
fn stats_table(stats: &Stats) -> String {
    let rows = stats_rows(stats);
    let name_width = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let value_width = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let mut text = String::new();
    for (name, value, meaning) in rows {
        text.push_str(&format!(
            "{name:<name_width$}  {value:>value_width$}  {meaning}\n"
        ));
    }
    text
}

/// `stats` as one JSON object on one line, keyed by the proto's field names.
fn stats_json(stats: &Stats) -> String {
    let fields: Vec<String> = stats_rows(stats)
        .into_iter()
        .map(|(name, value, _)| format!("\"{name}\":{value}"))
        .collect();
    format!("{{{}}}\n", fields.join(","))
}

/// A JSON string literal for `text`.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `1234567` as `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Parses a positive, finite number of seconds ("0.5", "30").
fn parse_seconds(raw: &str) -> Result<Duration, String> {
    let seconds: f64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("{raw:?} is not a number of seconds"))?;
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!("{raw:?} must be a positive number of seconds"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{raw:?} seconds is too long"))
}

/// `--timeout`: a positive number of seconds.
fn parse_timeout(raw: &str) -> Result<Duration, String> {
    parse_seconds(raw)
}

/// `--ttl`: 0 means never expire (the Python client's convention), anything
/// else a positive number of seconds.
fn parse_ttl(raw: &str) -> Result<Ttl, String> {
    if raw.trim().parse::<f64>() == Ok(0.0) {
        return Ok(Ttl::Never);
    }
    parse_seconds(raw)
        .map(Ttl::After)
        .map_err(|_| format!("{raw:?} must be 0 (never expire) or a positive number of seconds"))
}

/// A whole number of at least 1.
fn parse_positive(raw: &str) -> Result<usize, String> {
    match raw.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{raw:?} must be a whole number of at least 1")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn timeout_default_matches_the_library() {
        assert_eq!(
            parse_timeout(DEFAULT_TIMEOUT_SECS),
            Ok(tiny_cache_client::DEFAULT_TIMEOUT)
        );
    }

    #[test]
    fn ttl_zero_means_never_and_negative_is_refused() {
        assert_eq!(parse_ttl("0"), Ok(Ttl::Never));
        assert_eq!(
            parse_ttl("1.5"),
            Ok(Ttl::After(Duration::from_millis(1500)))
        );
        assert!(parse_ttl("-1").is_err());
        assert!(parse_ttl("soon").is_err());
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
