//! The `tiny-cache` command-line tool: read and write a tiny-cache server,
//! show its counters, run an embedded server, and benchmark the client.
//!
//! Every outcome has a documented exit status (see [`EXIT_CODES_HELP`]);
//! every failure is one `error: ...` line on stderr (and, with `--json`, one
//! JSON object on stdout); nothing the user or the server controls can make
//! it panic.

mod bench;
mod chart;
mod commands;
mod metrics_listen;
mod usage;
mod values;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Serialize;
use tiny_cache_client::cluster::Cluster;
use tiny_cache_client::server::{
    Server, DEFAULT_MAX_ITEMS, DEFAULT_MAX_MEMORY_BYTES, DEFAULT_MAX_VALUE_BYTES,
};
use tiny_cache_client::{Client, ClientBuilder, Error, TlsFailure, Ttl, DEFAULT_ADDRESS};

/// `--timeout`'s default, in seconds, as clap shows it; a unit test keeps it
/// equal to the library's `DEFAULT_TIMEOUT`.
const DEFAULT_TIMEOUT_SECS: &str = "30";

/// Where `--help` lists the options every subcommand accepts.
const GLOBAL_HEADING: &str = "Global options";

/// Where `--help` lists the client's TLS options.
const TLS_HEADING: &str = "TLS options (with a grpcs:// --server)";

/// One mebibyte, the unit of `serve --max-memory-mb`.
const MIB_BYTES: u64 = 1024 * 1024;

/// The exit statuses, shown at the end of `--help`; a unit test keeps every
/// [`Exit`] in it, and README's table says the same.
const EXIT_CODES_HELP: &str = "\
Exit status:
  0  success
  1  the key is missing: `get`, `touch`, or `get-many` with a key missing
  2  usage error: bad arguments, or input the client refuses before
     sending it (an invalid key, namespace or request id, a value that
     cannot be read or decoded, an unusable TLS certificate or key file)
  3  the operation failed: server unreachable, deadline exceeded, an error
     from the server, a value `--format utf8` cannot show, output that
     could not be written, or (`bench`) setup failing or every measured
     operation failing
  4  `set-if-absent`: the key already has a value; nothing was written
  5  `compare-and-set`: the current value differs from the expected one;
     nothing was written
  6  `compare-and-set`: the key is missing; nothing was written
  7  `get-many`, `set-many`, `delete-many`: the server refused at least
     one key (its reason is shown); the other keys were done
  8  `health`: the server answers, but the service is not SERVING
  9  `bench --baseline`: throughput fell, or p99 latency grew, by more
     than --tolerance against the saved run
  10  `bench --verify`: a value read was stale, impossible, another key's
      or corrupt";

/// Every exit status other than success; `EXIT_CODES_HELP` explains each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Missing = 1,
    Usage = 2,
    Failed = 3,
    Exists = 4,
    Mismatch = 5,
    CasNotFound = 6,
    ItemsRefused = 7,
    NotServing = 8,
    Regressed = 9,
    Unsound = 10,
}

/// Command-line client, embedded server and benchmark for tiny-cache.
#[derive(Debug, Parser)]
#[command(name = "tiny-cache", version, after_help = EXIT_CODES_HELP)]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

/// Options every subcommand accepts, before or after its name. The
/// reference CLI's `--target` and `--tls-ca` are accepted as hidden
/// aliases of `--server` and `--ca-cert`.
#[derive(Debug, Args)]
struct Globals {
    /// Server address: host:port, `[::1]:port` or grpc://host:port, and
    /// grpcs://host:port for TLS (`bench` uses it only when given on the
    /// command line, else it benchmarks an embedded server). Give it
    /// several times for a cluster: keys placed by rendezvous hashing.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL_HEADING,
        value_name = "ADDR",
        alias = "target",
        env = "CACHE_SERVER_ADDRESS",
        default_value = DEFAULT_ADDRESS,
        action = clap::ArgAction::Append
    )]
    server: Vec<String>,

    /// With several --server: how many servers hold each key.
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL_HEADING,
        value_name = "R",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    replicas: u16,

    /// With several --server: how many replicas a read asks (1 to R).
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL_HEADING,
        value_name = "Q",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..)
    )]
    read_quorum: u16,

    /// Deadline of each call in seconds, spanning its retries (fractions
    /// allowed).
    #[arg(
        long,
        global = true,
        help_heading = GLOBAL_HEADING,
        value_name = "SECS",
        env = "CACHE_TIMEOUT",
        default_value = DEFAULT_TIMEOUT_SECS,
        value_parser = parse_seconds
    )]
    timeout: Duration,

    /// Key space to work in (x-cache-namespace) [default: the shared key
    /// space].
    #[arg(long, global = true, help_heading = GLOBAL_HEADING, value_name = "NS")]
    namespace: Option<String>,

    /// Correlation id sent as x-request-id with every call [default: none,
    /// or a random one with --show-request-id].
    #[arg(long, global = true, help_heading = GLOBAL_HEADING, value_name = "ID")]
    request_id: Option<String>,

    /// Print the call's request id on stderr, as `x-request-id: ID` (every
    /// command but serve and bench).
    #[arg(long, global = true, help_heading = GLOBAL_HEADING)]
    show_request_id: bool,

    /// Print one JSON object on stdout instead of text: the command's
    /// result, or {"error", "error_kind", "exit_code"} when it fails
    /// (`bench` keeps its text report and adds the object as the last line).
    #[arg(long, global = true, help_heading = GLOBAL_HEADING)]
    json: bool,

    /// TLS (grpcs://): also trust the CA certificate(s) in this PEM file
    /// [default: the built-in public roots only].
    #[arg(
        long,
        global = true,
        help_heading = TLS_HEADING,
        value_name = "PEM",
        alias = "tls-ca"
    )]
    ca_cert: Option<PathBuf>,

    /// TLS: accept only this server certificate (PEM), checked byte for
    /// byte with its dates and name, for a server whose certificate comes
    /// from no CA [default: none pinned].
    #[arg(long, global = true, help_heading = TLS_HEADING, value_name = "PEM")]
    pin_cert: Option<PathBuf>,

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
    #[command(flatten)]
    Data(commands::DataCommand),
    /// Run an embedded server in the foreground until killed; prints the
    /// bound address on stdout.
    Serve(ServeArgs),
    /// Load-test a server: a mix of every call from many threads sharing
    /// one client, closed loop, at a fixed --rate, or in steps of rates
    /// against an --slo.
    // Boxed: bench's options are many times the size of the others.
    Bench(Box<BenchCommand>),
}

/// `bench`'s options and `--metrics-listen`.
#[derive(Debug, Args)]
struct BenchCommand {
    #[command(flatten)]
    args: bench::BenchArgs,
    #[command(flatten)]
    metrics: metrics_listen::MetricsListen,
}

/// Options of `serve`.
#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:50051")]
    listen: String,
    /// Server runtime worker threads.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
    )]
    workers: usize,
    /// Most entries kept before least-recently-used ones are evicted.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_ITEMS)]
    max_items: usize,
    /// Most memory accounted to entries, in MiB (value length + 33 bytes
    /// each).
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_MAX_MEMORY_BYTES / MIB_BYTES,
        value_parser = clap::value_parser!(u64).range(..=u64::MAX / MIB_BYTES)
    )]
    max_memory_mb: u64,
    /// Largest single entry in bytes (value length + 33).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_VALUE_BYTES)]
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
    #[command(flatten)]
    metrics: metrics_listen::MetricsListen,
}

/// Why a command did not succeed; each maps to one exit status.
#[derive(Debug)]
pub enum Failure {
    /// A documented outcome other than success (a missing key, a
    /// conditional write that did not happen, ...), with the lines that
    /// explain it on stderr in text mode (with `--json` the command's
    /// object already says it).
    Outcome { exit: Exit, notes: Vec<String> },
    /// The client or the server refused or failed the call.
    Client(Error),
    /// The command line needs fixing: input that cannot be read or decoded.
    Usage(String),
    /// Anything else (output, threads, the benchmark's own checks).
    Other(String),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Client(error)
    }
}

impl Failure {
    /// A documented non-success outcome explained by one line.
    pub fn outcome(exit: Exit, note: String) -> Failure {
        Failure::Outcome {
            exit,
            notes: vec![note],
        }
    }

    fn exit(&self) -> Exit {
        match self {
            Failure::Outcome { exit, .. } => *exit,
            // The client refused the input before any I/O: the command line
            // is what needs fixing, as with clap's own usage errors.
            Failure::Usage(_)
            | Failure::Client(Error::Validation(_))
            | Failure::Client(Error::Tls {
                kind: TlsFailure::InvalidConfiguration,
                ..
            }) => Exit::Usage,
            Failure::Client(_) | Failure::Other(_) => Exit::Failed,
        }
    }

    /// The `error_kind` of the JSON error object: what failed, in a word.
    fn kind(&self) -> &'static str {
        match self {
            Failure::Outcome { .. } => "outcome",
            Failure::Usage(_) => "usage",
            Failure::Other(_) => "failed",
            Failure::Client(error) => error_kind(error),
        }
    }

    /// The message of an error (not of an outcome).
    fn message(&self) -> Option<String> {
        match self {
            Failure::Outcome { .. } => None,
            Failure::Client(error) => Some(error.to_string()),
            Failure::Usage(message) | Failure::Other(message) => Some(message.clone()),
        }
    }
}

/// What failed, in a word: the `error_kind` of the JSON error object, and
/// how `bench` counts its errors.
pub fn error_kind(error: &Error) -> &'static str {
    match error {
        Error::Validation(_) => "validation",
        Error::InvalidArgument(_) => "invalid_argument",
        Error::ResourceExhausted(_) => "resource_exhausted",
        Error::Unavailable(_) => "unavailable",
        Error::DeadlineExceeded(_) => "deadline_exceeded",
        Error::Closed => "closed",
        Error::Protocol { .. } => "protocol",
        Error::NotUtf8 { .. } => "not_utf8",
        Error::Tls { .. } => "tls",
        Error::Status { .. } => "status",
        _ => "other",
    }
}

/// The JSON object of a failed command.
#[derive(Debug, Serialize)]
struct ErrorJson<'a> {
    error: &'a str,
    error_kind: &'static str,
    exit_code: u8,
}

/// Where a command's result goes: text or one JSON object on stdout.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

impl Output {
    /// Prints `object` as one line of JSON.
    pub fn object<T: Serialize>(&self, object: &T) -> Result<(), Failure> {
        let mut line = serde_json::to_vec(object)
            .map_err(|e| Failure::Other(format!("cannot encode the JSON output: {e}")))?;
        line.push(b'\n');
        write_stdout(&line)
    }
}

/// How to build a client, from the global options.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    timeout: Duration,
    namespace: Option<String>,
    request_id: Option<String>,
    ca_cert: Option<PathBuf>,
    pin_cert: Option<PathBuf>,
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
            pin_cert: globals.pin_cert.clone(),
            client_identity: globals.client_cert.clone().zip(globals.client_key.clone()),
            tls_server_name: globals.tls_server_name.clone(),
        }
    }

    /// A client of `address` with these settings; invalid ones are an
    /// `Error::Validation`.
    fn connect(&self, address: &str) -> Result<Client, Error> {
        self.finish(self.builder(address))
    }

    /// A builder with these settings but the request id, for callers that
    /// add more and then call [`ClientSettings::finish`].
    pub fn builder(&self, address: &str) -> ClientBuilder {
        self.apply(Client::builder(address).timeout(self.timeout))
    }

    /// A cluster of `addresses` with these settings (the request id sent
    /// with every call of every server).
    pub fn cluster(
        &self,
        addresses: &[String],
        replicas: u16,
        read_quorum: u16,
    ) -> Result<Cluster, Error> {
        let builder = addresses
            .iter()
            .fold(Cluster::builder(), |builder, address| {
                builder.server(address)
            })
            .replicas(usize::from(replicas))
            .read_quorum(usize::from(read_quorum))
            .timeout(self.timeout);
        let settings = self.clone();
        builder
            .configure_clients(move |client| {
                let client = settings.apply(client);
                match &settings.request_id {
                    Some(id) => client.metadata("x-request-id", id),
                    None => client,
                }
            })
            .build()
    }

    /// Adds the TLS and namespace settings to `builder`.
    fn apply(&self, mut builder: ClientBuilder) -> ClientBuilder {
        if let Some(namespace) = &self.namespace {
            builder = builder.namespace(namespace);
        }
        if let Some(ca) = &self.ca_cert {
            builder = builder.tls_ca_certificate_file(ca);
        }
        if let Some(pinned) = &self.pin_cert {
            builder = builder.tls_pinned_certificate_file(pinned);
        }
        if let Some((certificate, key)) = &self.client_identity {
            builder = builder.tls_client_identity_files(certificate, key);
        }
        if let Some(name) = &self.tls_server_name {
            builder = builder.tls_server_name(name);
        }
        builder
    }

    /// Builds `builder`'s client, sending the request id with every call.
    pub fn finish(&self, builder: ClientBuilder) -> Result<Client, Error> {
        let client = builder.build()?;
        match &self.request_id {
            Some(id) => client.with_request_id(id),
            None => Ok(client),
        }
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
    // bench has printed its own report (and JSON line) by the time it can
    // fail: an error object would be a second one.
    let json_errors = cli.globals.json && !matches!(cli.command, Command::Bench(_));
    let json = cli.globals.json;
    match run(cli, server_given) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let exit = failure.exit();
            let mut lines = match (&failure, failure.message()) {
                (Failure::Outcome { notes, .. }, _) if !json => notes.clone(),
                (_, Some(message)) => vec![format!("error: {message}")],
                _ => Vec::new(),
            };
            if let (true, Some(message)) = (json_errors, failure.message()) {
                let object = ErrorJson {
                    error: &message,
                    error_kind: failure.kind(),
                    exit_code: exit as u8,
                };
                let printed = Output { json }.object(&object);
                if let Err(Failure::Other(why)) = printed {
                    lines.push(format!("error: {why}"));
                }
            }
            for line in lines {
                // Nowhere left to report a failure to write stderr.
                let _ = writeln!(std::io::stderr(), "{line}");
            }
            ExitCode::from(exit as u8)
        }
    }
}

fn run(cli: Cli, server_given: bool) -> Result<(), Failure> {
    let settings = ClientSettings::from_globals(&cli.globals);
    let servers = &cli.globals.server;
    let address = servers.first().map_or(DEFAULT_ADDRESS, String::as_str);
    let out = Output {
        json: cli.globals.json,
    };
    let (replicas, read_quorum) = (cli.globals.replicas, cli.globals.read_quorum);
    let many = servers.len() > 1 || replicas > 1;
    match cli.command {
        Command::Data(command) if many => {
            if cli.globals.show_request_id {
                return Err(Failure::Usage(
                    "--show-request-id needs a single --server".into(),
                ));
            }
            let cluster = settings.cluster(servers, replicas, read_quorum)?;
            command.run(commands::Target::Many(&cluster), address, out)
        }
        Command::Data(command) => {
            let client = settings.connect(address)?;
            if !cli.globals.show_request_id {
                return command.run(commands::Target::One(&client), address, out);
            }
            // The id the server answered with: its echo of ours, or the
            // one it made up; on failure, the error carries it.
            let response = client
                .call_with_metadata(|c| Ok(command.run(commands::Target::One(c), address, out)))?;
            let answered = response.metadata().request_id().map(str::to_owned);
            let result = response.into_inner();
            let failed_with = match &result {
                Err(Failure::Client(error)) => error.request_id().map(str::to_owned),
                _ => None,
            };
            if let Some(id) = answered.or(failed_with) {
                let _ = writeln!(std::io::stderr(), "x-request-id: {id}");
            }
            result
        }
        Command::Serve(args) => {
            args.metrics.install()?;
            serve(&args, out)
        }
        Command::Bench(command) => {
            let BenchCommand { args, metrics } = *command;
            metrics.install()?;
            let target = if server_given && many {
                bench::Target::Cluster {
                    servers: servers.clone(),
                    replicas,
                    read_quorum,
                }
            } else if server_given {
                bench::Target::Remote(address.to_owned())
            } else {
                bench::Target::Embedded
            };
            bench::run(&args, &target, &settings, out)
        }
    }
}

/// What `serve --json` prints once it listens.
#[derive(Debug, Serialize)]
struct ServeJson {
    address: String,
    url: String,
    tls: bool,
}

/// Starts the embedded server and blocks this thread for good: the process
/// ends when it is killed, which also closes the listener.
fn serve(args: &ServeArgs, out: Output) -> Result<(), Failure> {
    // clap's range on --max-memory-mb keeps this product within u64.
    let max_memory_bytes = args.max_memory_mb.saturating_mul(MIB_BYTES);
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
    if out.json {
        out.object(&ServeJson {
            address: server.address(),
            url: server.url(),
            tls: server.is_tls(),
        })?;
    } else {
        let printed = if server.is_tls() {
            server.url()
        } else {
            server.address()
        };
        write_stdout(format!("{printed}\n").as_bytes())?;
        if let Some(url) = server.health_url() {
            write_stdout(format!("{url}\n").as_bytes())?;
        }
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

/// Parses a positive, finite number of seconds ("0.5", "30"), the
/// library's rule, as clap's parsers want it (clap has none for fractional
/// numbers with a range).
pub fn parse_seconds(raw: &str) -> Result<Duration, String> {
    tiny_cache_client::rules::parse_seconds(raw).map_err(|violation| violation.0)
}

/// `--ttl`: `never` or 0 mean never expire (0 is the Python client's
/// convention), anything else a positive number of seconds.
pub fn parse_ttl(raw: &str) -> Result<Ttl, String> {
    let trimmed = raw.trim();
    if trimmed.eq_ignore_ascii_case("never") || trimmed.parse::<f64>() == Ok(0.0) {
        return Ok(Ttl::Never);
    }
    parse_seconds(raw).map(Ttl::After).map_err(|_| {
        format!("{raw:?} must be `never`, 0 (never expire) or a positive number of seconds")
    })
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
            parse_seconds(DEFAULT_TIMEOUT_SECS),
            Ok(tiny_cache_client::DEFAULT_TIMEOUT)
        );
    }

    #[test]
    fn ttl_zero_or_never_means_never_and_negative_is_refused() {
        assert_eq!(parse_ttl("0"), Ok(Ttl::Never));
        assert_eq!(parse_ttl("never"), Ok(Ttl::Never));
        assert_eq!(parse_ttl(" Never "), Ok(Ttl::Never));
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
    fn help_lists_every_exit_status_once() {
        let all = [
            Exit::Missing,
            Exit::Usage,
            Exit::Failed,
            Exit::Exists,
            Exit::Mismatch,
            Exit::CasNotFound,
            Exit::ItemsRefused,
            Exit::NotServing,
            Exit::Regressed,
            Exit::Unsound,
        ];
        for code in std::iter::once(0).chain(all.iter().map(|&e| e as u8)) {
            let listed = EXIT_CODES_HELP
                .lines()
                .filter(|line| line.starts_with(&format!("  {code}  ")))
                .count();
            assert_eq!(listed, 1, "exit status {code}");
        }
    }
}
