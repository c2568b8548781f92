//! A whole run: agents in this process, customers here or in worker processes, progress while it
//! runs, and the merged report at the end.
//!
//! Every run is bounded: customers are cut at `start + duration + drain`, workers that are still
//! alive 20 s after that are killed, and agents stop once the customers are done.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::agent::{self, AgentCtx, Board};
use crate::aggregate::Aggregate;
use crate::customer::{self, Ctx};
use crate::faults::{self, FaultPlan};
use crate::metrics::now_us;
use crate::net::{self, Target};
use crate::profile::{Profile, Questions};
use crate::report::Report;
use crate::schedule::Schedule;
use crate::spawn::Cluster;
use crate::tally::{Results, Shared, Tick, WorkerLine};

/// How to run a profile.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub profile: PathBuf,
    pub targets: Vec<Target>,
    /// Overrides the profile's `workers`.
    pub workers: Option<u32>,
    /// `KEY=VALUE` overrides of the profile (`--set`), passed on to the workers.
    pub overrides: Vec<String>,
    pub seed: u64,
    /// Agent tokens; when `None` they come from the profile (`token_prefix` / `tokens_file`).
    pub agent_tokens: Option<Vec<String>>,
    /// The `kefu-load` executable to start workers from (default: this executable).
    pub exe: Option<PathBuf>,
    /// Print progress lines on stderr.
    pub progress: bool,
}

/// Something a customer source (this process or a worker) reported.
enum Event {
    Tick(usize, Tick),
    Done(usize, Box<Results>),
    /// A worker ended without a `Done` line.
    Gone(usize, String),
}

/// Runs the profile against the targets and returns the judged report.
pub async fn run(opts: RunOptions) -> anyhow::Result<Report> {
    run_inner(opts, None).await
}

/// [`run`] while `plan`'s faults are carried out on `cluster` (whose nodes are the targets),
/// timed from the run's start (the first arrival).
pub async fn run_with_faults(
    opts: RunOptions,
    cluster: &mut Cluster,
    plan: &FaultPlan,
) -> anyhow::Result<Report> {
    plan.check(cluster.node_count() as u32, cluster.has_redis())
        .map_err(anyhow::Error::msg)?;
    run_inner(opts, Some((cluster, plan))).await
}

async fn run_inner(
    opts: RunOptions,
    faults: Option<(&mut Cluster, &FaultPlan)>,
) -> anyhow::Result<Report> {
    let profile = Arc::new(Profile::load_with(&opts.profile, &opts.overrides)?);
    let questions = Arc::new(Questions::load(&profile.questions_file)?);
    if opts.targets.is_empty() {
        bail!("no target: give --target ws://127.0.0.1:PORT (or --spawn N)");
    }
    let workers = opts.workers.unwrap_or(profile.workers).max(1);
    let tokens = match opts.agent_tokens.clone() {
        Some(t) => t,
        None => agent_tokens(&profile)?,
    };
    let schedule = Schedule::new(&profile.phases);
    let duration = schedule.duration();
    let drain = Duration::from_secs(profile.drain_s);

    // Agents first, so the first customers who ask for a person find someone.
    let shared = Arc::new(Shared::default());
    let specs = agent::specs(&profile, &tokens, &opts.targets);
    let board = Arc::new(Board::new(&specs));
    let actx = Arc::new(AgentCtx {
        profile: profile.clone(),
        targets: opts.targets.clone(),
        shared: shared.clone(),
        board: board.clone(),
        seed: opts.seed,
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut agents = JoinSet::new();
    for spec in specs.clone() {
        agents.spawn(agent::run(actx.clone(), spec, stop_rx.clone()));
    }
    let lead = if specs.is_empty() { 200 } else { 1500 };
    let start_us = now_us() + lead * 1000;
    let start = Instant::now() + Duration::from_millis(lead);
    let deadline = start + duration + drain;

    let (tx, mut rx) = mpsc::channel::<Event>(1024);
    let mut children = Vec::new();
    if workers == 1 {
        let ctx = Arc::new(Ctx {
            profile: profile.clone(),
            questions,
            targets: opts.targets.clone(),
            sources: sources(0, profile.source_addresses),
            workers: 1,
            shared: shared.clone(),
            seed: opts.seed,
            id_prefix: "c0".into(),
            deadline,
        });
        let tx = tx.clone();
        tokio::spawn(async move {
            // The parent's ticker reads the shared tally; this one must not also drain it.
            let results = drive_customers(ctx, 0, 1, start, None).await;
            let _ = tx.send(Event::Done(0, Box::new(results))).await;
        });
    } else {
        let exe = match &opts.exe {
            Some(e) => e.clone(),
            None => std::env::current_exe().context("finding the kefu-load executable")?,
        };
        for w in 0..workers {
            let child = spawn_worker(
                &exe,
                &opts,
                w,
                workers,
                start_us,
                profile.source_addresses,
                tx.clone(),
            )?;
            children.push(child);
        }
    }
    drop(tx);

    // The faults advance inside the loop below (polled with it), so they stop with the run;
    // what they did so far is in the log either way.
    let fault_log = faults::Log::default();
    let mut faults_done = faults.is_none();
    let fault_run = async {
        if let Some((cluster, plan)) = faults {
            faults::execute(cluster, plan, start, &fault_log).await;
        }
    };
    tokio::pin!(fault_run);

    let sources = workers as usize;
    let mut agg = Aggregate::default();
    let mut done = vec![false; sources];
    let hard_deadline = deadline + Duration::from_secs(20);
    let mut ticker =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut t_s = 0u64;
    while done.iter().any(|d| !d) {
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Event::Tick(src, tick)) if workers > 1 => agg.tick(src, tick),
                Some(Event::Tick(..)) => {}
                Some(Event::Done(src, r)) => {
                    done[src] = true;
                    // In-process customers share this process's tally, collected below.
                    if workers > 1 {
                        agg.results.push(*r);
                    }
                }
                Some(Event::Gone(src, why)) => {
                    if !done[src] {
                        eprintln!("kefu-load: worker {src} ended early: {why}");
                        done[src] = true;
                    }
                }
                None => break,
            },
            _ = ticker.tick() => {
                // This process's own second: agents always, customers too when in-process.
                agg.tick(usize::MAX, shared.tick(t_s));
                if opts.progress && t_s % 2 == 1 {
                    eprintln!("{}", agg.progress(t_s));
                }
                t_s += 1;
            }
            _ = &mut fault_run, if !faults_done => faults_done = true,
            _ = tokio::time::sleep_until(hard_deadline) => {
                eprintln!("kefu-load: hard deadline reached, stopping workers");
                break;
            }
        }
    }
    if !faults_done {
        eprintln!("kefu-load: the run ended before every fault was done");
    }
    for mut c in children {
        let _ = c.start_kill();
        let _ = c.wait().await;
    }
    agg.tick(usize::MAX, shared.tick(t_s));
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while agents.join_next().await.is_some() {}
    })
    .await;
    agents.abort_all();
    // The parent's own results: the agents, plus the customers when they ran in-process.
    agg.results.push(shared.results());
    let mut report = agg.report(
        &profile,
        &opts.targets,
        workers,
        specs.len() as u32,
        start_us,
    );
    let b = board.summary();
    report.agent_load_spread_max = b.spread_max;
    report.agent_over_capacity = b.over_capacity;
    report.assignments = b.assignments;
    report.duration_s = duration.as_secs_f64();
    report.faults = fault_log
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    report.judge(&profile.slo);
    Ok(report)
}

/// Worker `w`'s source addresses: a block of `n` after the blocks of the workers before it.
pub fn sources(w: u32, n: u32) -> Vec<IpAddr> {
    (0..n).map(|j| net::source_addr(w * n + j)).collect()
}

/// Tokens for agents when the run did not create them (`--target`): from the profile.
pub fn agent_tokens(profile: &Profile) -> anyhow::Result<Vec<String>> {
    let n = profile.agents.total() as usize;
    if n == 0 {
        return Ok(Vec::new());
    }
    if let Some(prefix) = &profile.agents.token_prefix {
        return Ok((1..=n).map(|i| format!("{prefix}{i:03}")).collect());
    }
    if let Some(file) = &profile.agents.tokens_file {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("reading agents.tokens_file {}", file.display()))?;
        let tokens: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if tokens.len() < n {
            bail!(
                "agents.tokens_file {} has {} tokens, the profile has {n} agents",
                file.display(),
                tokens.len()
            );
        }
        return Ok(tokens);
    }
    bail!("the profile has {n} agents but neither agents.token_prefix nor agents.tokens_file; with --target the gateway's roster must know the agents' tokens (or use --spawn)")
}

/// Starts customer number `k` for every arrival `k % workers == worker` at its time, emits a
/// tick per second, and returns this process's results when every customer has finished.
pub async fn drive_customers(
    ctx: Arc<Ctx>,
    worker: u32,
    workers: u32,
    start: Instant,
    mut on_tick: Option<&mut (dyn FnMut(Tick) + Send)>,
) -> Results {
    let schedule = Schedule::new(&ctx.profile.phases);
    let arrivals: Vec<(u64, Duration)> = schedule
        .arrivals()
        .enumerate()
        .filter(|(k, _)| *k as u64 % u64::from(workers) == u64::from(worker))
        .map(|(k, d)| (k as u64, d))
        .collect();
    let mut tasks = JoinSet::new();
    let probe = tokio::spawn(lag_probe(ctx.shared.clone()));
    let mut ticker =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut t_s = 0;
    let mut next = arrivals.into_iter().peekable();
    loop {
        while tasks.try_join_next().is_some() {}
        let at = next.peek().map(|(_, d)| start + *d);
        if at.is_none() && tasks.is_empty() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(at.unwrap_or(start)), if at.is_some() => {
                // Start every arrival that is due (catching up if this task was late).
                while let Some(&(k, d)) = next.peek() {
                    if start + d > Instant::now() {
                        break;
                    }
                    next.next();
                    tasks.spawn(customer::run(ctx.clone(), k));
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = ticker.tick(), if on_tick.is_some() => {
                if let Some(f) = on_tick.as_mut() {
                    f(ctx.shared.tick(t_s));
                }
                t_s += 1;
            }
            _ = tokio::time::sleep_until(ctx.deadline + Duration::from_secs(5)) => {
                tasks.abort_all();
                break;
            }
        }
    }
    probe.abort();
    if let Some(f) = on_tick.as_mut() {
        f(ctx.shared.tick(t_s));
    }
    ctx.shared.results()
}

fn spawn_worker(
    exe: &std::path::Path,
    opts: &RunOptions,
    w: u32,
    workers: u32,
    start_us: u64,
    sources_per_worker: u32,
    tx: mpsc::Sender<Event>,
) -> anyhow::Result<tokio::process::Child> {
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("worker")
        .arg("--profile")
        .arg(&opts.profile)
        .args([
            "--worker",
            &w.to_string(),
            "--workers",
            &workers.to_string(),
        ])
        .args([
            "--start-us",
            &start_us.to_string(),
            "--seed",
            &opts.seed.to_string(),
        ])
        .args(["--sources", &sources_per_worker.to_string()]);
    for o in &opts.overrides {
        cmd.arg("--set").arg(o);
    }
    for t in &opts.targets {
        cmd.arg("--target").arg(t.to_string());
    }
    cmd.stdout(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting worker {}", exe.display()))?;
    let stdout = child.stdout.take().context("worker stdout")?;
    let src = w as usize;
    tokio::spawn(async move {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            // Bounded: a Done line with every message id of 15,000 sessions is a few MB.
            match (&mut reader)
                .take(256 << 20)
                .read_until(b'\n', &mut line)
                .await
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            match serde_json::from_slice::<WorkerLine>(&line) {
                Ok(WorkerLine::Tick(t)) => {
                    let _ = tx.send(Event::Tick(src, t)).await;
                }
                Ok(WorkerLine::Done(r)) => {
                    let _ = tx.send(Event::Done(src, r)).await;
                    return;
                }
                Err(e) => eprintln!("kefu-load: worker {src}: unreadable line: {e}"),
            }
        }
        let _ = tx
            .send(Event::Gone(src, "exited without results".into()))
            .await;
    });
    Ok(child)
}

/// Every 10 ms, how late the timer fired: the load process's own scheduling delay (sleeps
/// round up to the timer's 1 ms tick, so ~1 ms of it is the timer, not the machine).
async fn lag_probe(shared: Arc<Shared>) {
    const EVERY: Duration = Duration::from_millis(10);
    loop {
        let asleep = Instant::now();
        tokio::time::sleep(EVERY).await;
        let late = asleep.elapsed().saturating_sub(EVERY);
        shared.tally().hists.lag.record(late);
    }
}

/// Runs as `kefu-load worker …`: one slice of the customers, reporting on stdout.
pub async fn worker_main(
    opts: RunOptions,
    worker: u32,
    workers: u32,
    start_us: u64,
    sources_per_worker: u32,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let profile = Arc::new(Profile::load_with(&opts.profile, &opts.overrides)?);
    let questions = Arc::new(Questions::load(&profile.questions_file)?);
    let wait = Duration::from_micros(start_us.saturating_sub(now_us()));
    let start = Instant::now() + wait;
    let duration = Schedule::new(&profile.phases).duration();
    let ctx = Arc::new(Ctx {
        profile: profile.clone(),
        questions,
        targets: opts.targets.clone(),
        sources: sources(worker, sources_per_worker),
        workers,
        shared: Arc::new(Shared::default()),
        seed: opts.seed,
        id_prefix: format!("c{worker}"),
        deadline: start + duration + Duration::from_secs(profile.drain_s),
    });
    let emit = |line: &WorkerLine| {
        if let Ok(text) = serde_json::to_string(line) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    };
    let mut tick = |t: Tick| emit(&WorkerLine::Tick(t));
    let results = drive_customers(ctx, worker, workers, start, Some(&mut tick)).await;
    emit(&WorkerLine::Done(Box::new(results)));
    Ok(())
}
