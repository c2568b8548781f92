//! Logs (tracing) and metrics (Prometheus via the `metrics` crate).

pub mod metric;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{fmt, EnvFilter};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Log lines that may wait for the writer thread; past that they are dropped (and counted by
/// the writer), never waited for.
const LOG_QUEUE_LINES: usize = 65_536;

/// Keeps the log writer thread alive; dropping it flushes what is queued.
pub type LogGuard = tracing_appender::non_blocking::WorkerGuard;

/// Installs the global log subscriber (stderr, `RUST_LOG` filter, default `info`; tantivy's
/// own info lines about every index commit are noise to an operator, so only its warnings).
///
/// Lines go through a bounded queue to a writer thread: a runtime thread never waits for
/// stderr (a pipe nobody reads, a disk busy writing back), which at a peak would hold up
/// every connection scheduled on that thread.
pub fn init_logs(format: LogFormat) -> LogGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(true)
        .thread_name("kefu-log")
        .finish(std::io::stderr());
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tantivy=warn"));
    // The HTTP client's own debug lines may name the shop's order URL with the customer's id
    // in it: at most its warnings, whatever RUST_LOG asks for.
    for quiet in ["reqwest=warn", "hyper_util=warn", "hyper=warn"] {
        if let Ok(directive) = quiet.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = fmt().with_env_filter(filter).with_writer(writer);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if let Err(err) = result {
        eprintln!("logging already initialised: {err}");
    }
    guard
}

/// Latency buckets in seconds: fine below 100 ms where the promises are, coarse up to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 6.0, 10.0, 30.0, 60.0, 300.0,
];

/// The process-wide Prometheus recorder. Installed once: several gateways in one test
/// process share it, and the exporter renders whatever was recorded.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics may be empty");
            }
            metric::describe();
            handle
        })
        .clone()
}

/// Measures the node's scheduling delay for `kefu_runtime_lag_seconds` until the runtime
/// stops: a sleep of 10 ms that wakes late means every task of the node waited as long.
pub async fn probe_runtime_lag() {
    const EVERY: std::time::Duration = std::time::Duration::from_millis(10);
    loop {
        let asleep = tokio::time::Instant::now();
        tokio::time::sleep(EVERY).await;
        let late = asleep.elapsed().saturating_sub(EVERY);
        metrics::histogram!(metric::RUNTIME_LAG_SECONDS).record(late.as_secs_f64());
    }
}
