//! `kefu-load`: the command line over the `load_tests` library.
//!
//! Exit codes: 0 the run passed its SLOs, 1 an SLO failed, 2 the run could not be done.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use load_tests::net::Target;
use load_tests::report::Report;
use load_tests::{idle, run, spawn, svg};

#[derive(Parser)]
#[command(
    name = "kefu-load",
    version,
    about = "Sale-day load generator for the kefu gateway"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a traffic profile against gateway nodes and judge it by the profile's SLOs.
    Run {
        /// Profile TOML (see config/load/).
        #[arg(long)]
        profile: PathBuf,
        /// Gateway node `ws://127.0.0.1:PORT` (repeat for several nodes; loopback only).
        #[arg(
            long = "target",
            required_unless_present = "spawn",
            conflicts_with = "spawn"
        )]
        targets: Vec<Target>,
        /// Start N gateway nodes from target/release (plus redis-server when N > 1) instead.
        #[arg(long)]
        spawn: Option<u32>,
        /// Gateway binary for --spawn (default: $KEFU_GATEWAY_BIN or target/release/kefu-gateway).
        #[arg(long)]
        gateway_bin: Option<PathBuf>,
        /// Write the JSON report here (and the chart next to it, .svg).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Write the SVG chart here instead.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Worker processes for customers (overrides the profile).
        #[arg(long)]
        workers: Option<u32>,
        /// Seed for every random choice of the run.
        #[arg(long, default_value_t = 11_11)]
        seed: u64,
        /// No progress lines.
        #[arg(long)]
        quiet: bool,
    },
    /// Open N quiet customer sessions and report the gateway's resident memory per session.
    Idle {
        #[arg(long)]
        sessions: u32,
        #[arg(long = "target", required = true)]
        targets: Vec<Target>,
        /// The gateway's pid (default: found from the target's listening port, else /metrics).
        #[arg(long)]
        pid: Option<u32>,
        /// New sessions per second while opening.
        #[arg(long, default_value_t = 2000)]
        rate: u32,
        /// Seconds to wait after the last greeting before measuring.
        #[arg(long, default_value_t = 3)]
        settle_s: u64,
    },
    /// Internal: one worker process of a `run` (started by `run` itself).
    #[command(hide = true)]
    Worker {
        #[arg(long)]
        profile: PathBuf,
        #[arg(long = "target", required = true)]
        targets: Vec<Target>,
        #[arg(long)]
        worker: u32,
        #[arg(long)]
        workers: u32,
        #[arg(long)]
        start_us: u64,
        #[arg(long)]
        seed: u64,
        /// Source addresses per worker.
        #[arg(long)]
        sources: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kefu-load: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(dispatch(cli.cmd)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kefu-load: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(cmd: Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Run {
            profile,
            targets,
            spawn,
            gateway_bin,
            report,
            svg,
            workers,
            seed,
            quiet,
        } => {
            let mut opts = run::RunOptions {
                profile: profile.clone(),
                targets,
                workers,
                seed,
                agent_tokens: None,
                exe: None,
                progress: !quiet,
            };
            let cluster = match spawn {
                Some(n) => {
                    let p = load_tests::profile::Profile::load(&profile)?;
                    let bin = gateway_bin.unwrap_or_else(spawn::default_gateway_bin);
                    let c = spawn::Cluster::start(n, &p, &bin).await?;
                    eprintln!(
                        "kefu-load: started {n} gateway node(s): {} (logs in {})",
                        c.targets
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", "),
                        c.dir.display()
                    );
                    opts.targets = c.targets.clone();
                    opts.agent_tokens = Some(c.tokens.clone());
                    Some(c)
                }
                None => None,
            };
            let result = run::run(opts).await;
            if let Some(c) = cluster {
                c.stop().await;
            }
            let r = result?;
            write_outputs(&r, report.as_ref(), svg.as_ref())?;
            print!("{}", r.summary());
            Ok(if r.slo_pass {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Idle {
            sessions,
            targets,
            pid,
            rate,
            settle_s,
        } => {
            let r = idle::idle(idle::IdleOptions {
                sessions,
                targets,
                pid,
                rate,
                settle: std::time::Duration::from_secs(settle_s),
            })
            .await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
            println!(
                "idle: {} sessions open, {:.2} KiB resident per session ({:.2} KiB for the second half) ({} -> {} bytes, {})",
                r.sessions_open,
                r.kib_per_session,
                r.marginal_kib_per_session,
                r.rss_before_bytes,
                r.rss_after_bytes,
                r.rss_source
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Worker {
            profile,
            targets,
            worker,
            workers,
            start_us,
            seed,
            sources,
        } => {
            let opts = run::RunOptions {
                profile,
                targets,
                workers: Some(workers),
                seed,
                agent_tokens: Some(Vec::new()),
                exe: None,
                progress: false,
            };
            run::worker_main(opts, worker, workers, start_us, sources).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn write_outputs(
    r: &Report,
    json: Option<&PathBuf>,
    svg_path: Option<&PathBuf>,
) -> anyhow::Result<()> {
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(r)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let svg_path = svg_path
        .cloned()
        .or_else(|| json.map(|p| p.with_extension("svg")));
    if let Some(path) = svg_path {
        let title = format!(
            "kefu-load {} — {} sessions, peak {}",
            r.profile, r.sessions, r.peak_concurrent
        );
        std::fs::write(&path, svg::chart(&title, &r.timeline))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
