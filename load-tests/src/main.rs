//! `kefu-load`: the command line over the `load_tests` library.
//!
//! Exit codes: 0 the run passed its SLOs, 1 an SLO failed, 2 the run could not be done.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use load_tests::net::Target;
use load_tests::report::Report;
use load_tests::{idle, relay, run, spawn, svg};

/// The load generator shares the machine with the nodes it measures: the less it spends on
/// allocation, the more of the cores the nodes get.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Freed pages go back to the kernel with `MADV_FREE` rather than `MADV_DONTNEED`, so the
/// sessions that end and begin all through a run reuse them without page faults (as the
/// gateway's `allocator::tune` does, which explains it). Option 5 is mimalloc's
/// `purge_decommits`; `MIMALLOC_PURGE_DECOMMITS` in the environment still decides.
#[allow(unsafe_code)]
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DECOMMITS").is_none() {
        // SAFETY: sets an integer in mimalloc's static option table; no pointers.
        unsafe { libmimalloc_sys::mi_option_set(5, 0) };
    }
}

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
        /// A fault to inject into the spawned nodes (repeat; replaces the profile's [faults]
        /// list): kill:K@T (SIGKILL node K, from 1, at T into the run; started again after
        /// --restart-after), restart:K@T (SIGTERM, wait, start), restart:all@T (rolling),
        /// redis-restart@T (shutdown with AOF, start). T like 120s, 500ms, 2m.
        #[arg(long = "fault", requires = "spawn")]
        faults: Vec<String>,
        /// How long a killed node stays down (default: the profile's, else 5s).
        #[arg(long, requires = "spawn")]
        restart_after: Option<String>,
        /// Write the JSON report here (and the chart next to it, .svg).
        #[arg(long)]
        report: Option<PathBuf>,
        /// Write the SVG chart here instead.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Worker processes for customers (overrides the profile).
        #[arg(long)]
        workers: Option<u32>,
        /// Override one key of the profile, KEY=VALUE (repeat), e.g.
        /// `--set customer.returning_share=0.1`.
        #[arg(long = "set")]
        overrides: Vec<String>,
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
        /// Then hold as many idle WebSockets on nginx + nchan (started here, stopped at the end)
        /// and print both figures and their ratio.
        #[arg(long)]
        compare_nchan: bool,
    },
    /// Relay throughput of one node: agents send to their chats as fast as the node accepts.
    Relay {
        /// Start this many gateway nodes (only 1) with a generated roster and a throw-away store.
        #[arg(long, required_unless_present = "target", conflicts_with = "target")]
        spawn: Option<u32>,
        /// A gateway node you started, `ws://127.0.0.1:PORT` (needs --agent-token).
        #[arg(long)]
        target: Option<Target>,
        /// Agent token for --target (repeat; one agent per token, at most --agents are used).
        #[arg(long = "agent-token")]
        agent_tokens: Vec<String>,
        /// Gateway binary for --spawn (default: $KEFU_GATEWAY_BIN or target/release/kefu-gateway).
        #[arg(long)]
        gateway_bin: Option<PathBuf>,
        /// The gateway's pid for the CPU figure (default: the spawned one, or found from the port).
        #[arg(long)]
        pid: Option<u32>,
        #[arg(long, default_value_t = 10_000)]
        customers: u32,
        /// Agents, each with capacity customers/agents (rounded up).
        #[arg(long, default_value_t = 100)]
        agents: u32,
        /// Measured interval, seconds.
        #[arg(long, default_value_t = 30)]
        duration_s: u64,
        /// Unacknowledged messages each agent keeps in flight.
        #[arg(long, default_value_t = 16)]
        window: u32,
        /// Most seconds to wait for every customer to be assigned before sending anyway.
        #[arg(long, default_value_t = 60)]
        assign_timeout_s: u64,
        /// Seconds to wait for the last deliveries after the interval.
        #[arg(long, default_value_t = 5)]
        drain_s: u64,
        /// New customer connections per second.
        #[arg(long, default_value_t = 2000)]
        connect_rate: u32,
        /// Write the JSON report here.
        #[arg(long)]
        report: Option<PathBuf>,
        #[arg(long)]
        quiet: bool,
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
        #[arg(long = "set")]
        overrides: Vec<String>,
    },
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    let rt = tokio::runtime::Runtime::new();
    let rt = match rt {
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
            faults,
            restart_after,
            report,
            svg,
            workers,
            overrides,
            seed,
            quiet,
        } => {
            let p = load_tests::profile::Profile::load_with(&profile, &overrides)?;
            let plan = p
                .faults
                .plan(&faults, restart_after.as_deref())
                .map_err(anyhow::Error::msg)?;
            if !plan.is_empty() && spawn.is_none() {
                anyhow::bail!(
                    "faults need --spawn N: they are done to the nodes this run starts \
                     (the profile's [faults] list has {} of them)",
                    plan.faults.len()
                );
            }
            let mut opts = run::RunOptions {
                profile: profile.clone(),
                targets,
                workers,
                overrides,
                seed,
                agent_tokens: None,
                exe: None,
                progress: !quiet,
            };
            let cluster = match spawn {
                Some(n) => {
                    let bin = gateway_bin.unwrap_or_else(spawn::default_gateway_bin);
                    let c = spawn::Cluster::start(n, &p, &bin).await?;
                    eprintln!(
                        "kefu-load: started {n} gateway node(s): {} (logs in {})",
                        c.targets
                            .iter()
                            .enumerate()
                            .map(|(i, t)| format!("{}={t}", i + 1))
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
            let result = match cluster {
                Some(mut c) => {
                    let r = if plan.is_empty() {
                        run::run(opts).await
                    } else {
                        run::run_with_faults(opts, &mut c, &plan).await
                    };
                    c.stop().await;
                    r
                }
                None => run::run(opts).await,
            };
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
            compare_nchan,
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
            if compare_nchan {
                let mut nginx = load_tests::nchan::Nginx::start(sessions + 1000).await?;
                eprintln!(
                    "kefu-load: started nginx + nchan on {} pid {} (config in {})",
                    nginx.target,
                    nginx.pid,
                    nginx.dir.display()
                );
                let n = load_tests::nchan::idle_nchan(
                    &nginx,
                    sessions,
                    rate,
                    std::time::Duration::from_secs(settle_s),
                )
                .await;
                nginx.stop().await;
                let n = n?;
                println!("{}", serde_json::to_string_pretty(&n)?);
                let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
                println!(
                    "idle: nchan: {} sockets open, {:.2} KiB resident per socket ({:.2} KiB for the second half) ({} -> {} bytes)",
                    n.sessions_open,
                    n.kib_per_session,
                    n.marginal_kib_per_session,
                    n.rss_before_bytes,
                    n.rss_after_bytes
                );
                println!(
                    "idle: kefu/nchan ratio: {:.2} (all), {:.2} (second half); kefu {:.2} KiB vs nchan {:.2} KiB per idle connection at {} connections",
                    ratio(r.kib_per_session, n.kib_per_session),
                    ratio(r.marginal_kib_per_session, n.marginal_kib_per_session),
                    r.kib_per_session,
                    n.kib_per_session,
                    sessions
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Relay {
            spawn,
            target,
            agent_tokens,
            gateway_bin,
            pid,
            customers,
            agents,
            duration_s,
            window,
            assign_timeout_s,
            drain_s,
            connect_rate,
            report,
            quiet,
        } => {
            let mut opts = relay::RelayOptions {
                target: match target {
                    Some(t) => t,
                    None => "ws://127.0.0.1:1".parse().map_err(anyhow::Error::msg)?,
                },
                tokens: agent_tokens.into_iter().take(agents as usize).collect(),
                customers,
                duration: std::time::Duration::from_secs(duration_s),
                window,
                pid,
                assign_timeout: std::time::Duration::from_secs(assign_timeout_s),
                drain: std::time::Duration::from_secs(drain_s),
                connect_rate,
                notes: vec![relay_limits_note()],
                progress: !quiet,
            };
            let mut spawned = None;
            if let Some(n) = spawn {
                if n != 1 {
                    anyhow::bail!("relay --spawn takes 1 (one node is what is measured)");
                }
                let bin = gateway_bin.unwrap_or_else(spawn::default_gateway_bin);
                let (cluster, store_dir, notes) = spawn_relay_node(&bin, customers, agents).await?;
                eprintln!(
                    "kefu-load: started 1 gateway node: {} pid {} (logs in {})",
                    cluster.targets[0],
                    cluster.pids[0],
                    cluster.dir.display()
                );
                opts.target = cluster.targets[0];
                opts.tokens = cluster.tokens.clone();
                opts.pid = opts.pid.or(cluster.pids.first().copied());
                opts.notes.extend(notes);
                spawned = Some((cluster, store_dir));
            }
            let result = relay::relay(opts).await;
            if let Some((cluster, store_dir)) = spawned {
                cluster.stop().await;
                let _ = std::fs::remove_dir_all(store_dir);
            }
            let r = result?;
            if let Some(path) = &report {
                std::fs::write(path, serde_json::to_string_pretty(&r)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            print!("{}", r.summary());
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
            overrides,
        } => {
            let opts = run::RunOptions {
                profile,
                targets,
                workers: Some(workers),
                overrides,
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

/// The frame budget of the node `relay --spawn 1` starts: far above what it can take.
const RELAY_FRAME_BUDGET: &str = "1000000";

/// What the relay run does about the gateway's limits, said in its output.
fn relay_limits_note() -> String {
    "the gateway rate-limits customer messages (limits.messages_per_second) and every socket's \
     frames (limits.frames_per_second, frame_burst: 20/s, bursts of 60); against your own node \
     (--target) raise the frame budget or agents are cut off after their first burst"
        .into()
}

/// One node for `relay --spawn 1`: a roster of `agents` agents in every group with capacity
/// customers/agents, its encrypted store in a temp file, and the per-address and outbound-queue
/// limits raised so that neither is what is measured.
async fn spawn_relay_node(
    bin: &std::path::Path,
    customers: u32,
    agents: u32,
) -> anyhow::Result<(spawn::Cluster, PathBuf, Vec<String>)> {
    if agents == 0 {
        anyhow::bail!("--agents must be at least 1");
    }
    let capacity = customers.div_ceil(agents).max(1);
    let profile_text = format!(
        r#"
name = "relay"
questions_file = "unused.jsonl"
[[phase]]
duration_s = 1
rate_start = 1
rate_end = 1
[customer]
mix = {{ kb = 1.0, out_of_scope = 0.0, human = 0.0, complaint = 0.0 }}
questions = [1, 1]
think = {{ dist = "fixed", ms = 1 }}
patience = {{ dist = "fixed", ms = 1 }}
[[agents.pool]]
count = {agents}
groups = ["pre_sale", "after_sale", "logistics", "complaint"]
capacity = 1
"#
    );
    let mut profile = load_tests::profile::Profile::parse(&profile_text)?;
    // Profiles cap an agent's capacity at 50 (a person); a relay benchmark wants more chats per
    // socket, and the gateway's roster takes any capacity.
    for pool in &mut profile.agents.pools {
        pool.capacity = capacity;
    }
    let store_dir = std::env::temp_dir().join(format!(
        "kefu-relay-store-{}-{}",
        std::process::id(),
        load_tests::metrics::now_us()
    ));
    std::fs::create_dir_all(&store_dir)
        .with_context(|| format!("creating {}", store_dir.display()))?;
    let mut key = [0u8; 32];
    {
        use std::io::Read as _;
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .context("reading /dev/urandom for the store key")?;
    }
    let per_ip = (customers + agents + 1000).to_string();
    let env = vec![
        (
            "KEFU__STORE__URL".to_owned(),
            format!("sqlite://{}", store_dir.join("kefu.db").display()),
        ),
        ("KEFU_ENCRYPTION_KEY".to_owned(), base64(&key)),
        (
            "KEFU__LIMITS__MAX_CONNECTIONS_PER_IP".to_owned(),
            per_ip.clone(),
        ),
        ("KEFU__LIMITS__OUTBOUND_QUEUE".to_owned(), "1024".to_owned()),
        // Every socket, an agent's too, has a frame budget (20/s, bursts of 60 by default)
        // against floods; an agent sending as fast as the node accepts is the point here.
        (
            "KEFU__LIMITS__FRAMES_PER_SECOND".to_owned(),
            RELAY_FRAME_BUDGET.to_owned(),
        ),
        (
            "KEFU__LIMITS__FRAME_BURST".to_owned(),
            RELAY_FRAME_BUDGET.to_owned(),
        ),
    ];
    let notes = vec![format!(
        "spawned node: {agents} agents of capacity {capacity}, store in a temp SQLite file, \
             KEFU__LIMITS__MAX_CONNECTIONS_PER_IP={per_ip}, KEFU__LIMITS__OUTBOUND_QUEUE=1024 \
             (so the slow-consumer cut at 64 queued frames is not what is measured), \
             KEFU__LIMITS__FRAMES_PER_SECOND and FRAME_BURST={RELAY_FRAME_BUDGET} (the per-socket \
             frame budget)"
    )];
    let cluster = spawn::Cluster::start_with_env(1, &profile, bin, &env).await?;
    Ok((cluster, store_dir, notes))
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= c.len() {
                out.push(A[((n >> (18 - 6 * k)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
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
