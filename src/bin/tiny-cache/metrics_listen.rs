//! `--metrics-listen ADDR` of `bench` and `serve`: the process's metrics
//! (the `metrics` facade: the client's calls, errors, retries, latencies)
//! on a Prometheus endpoint for as long as the command runs.

use std::net::SocketAddr;

use clap::Args;
use metrics_exporter_prometheus::PrometheusBuilder;

use crate::Failure;

/// The option, flattened into the commands that take it.
#[derive(Debug, Args)]
pub struct MetricsListen {
    /// Serve this process's metrics for Prometheus on ADDR
    /// (http://ADDR/metrics) while the command runs. `bench` reports its
    /// client's calls; the server's own counters are on --health-listen's
    /// /metrics.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
}

impl MetricsListen {
    /// Installs the exporter as the process's recorder, if asked.
    pub fn install(&self) -> Result<(), Failure> {
        let Some(address) = self.metrics_listen else {
            return Ok(());
        };
        PrometheusBuilder::new()
            .with_http_listener(address)
            .install()
            .map_err(|why| Failure::Other(format!("--metrics-listen {address}: {why}")))
    }
}
