//! The HTTP side: binding, routes, readiness, background chores and the drain on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::agent::Agents;
use crate::bot::Bot;
use crate::config::Settings;
use crate::limits::{ConnectionLimits, FailureThrottle};
use crate::roster::RosterStore;
use crate::routing::{Bus, NodeEvent, Relay};
use crate::session::{SessionLimits, Sessions};
use crate::shutdown::Shutdown;
use crate::telemetry::metric;
use crate::{admin, agent, customer, records, routing, telemetry};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Bot(#[from] crate::bot::BotError),
    #[error(transparent)]
    Roster(#[from] crate::roster::RosterError),
    #[error("routing: {0}")]
    Dispatch(#[from] crate::dispatch::DispatchError),
    #[error(transparent)]
    Bus(#[from] crate::routing::bus::BusError),
    #[error("operators roster (server.operators_file): {0}")]
    Operators(String),
    #[error("conversation store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("conversation log: {0}")]
    Journal(#[from] crate::journal::JournalError),
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// State shared by every handler and connection of one node.
pub struct Shared {
    pub settings: Settings,
    pub node_id: String,
    pub sessions: Arc<Sessions>,
    pub bot: Bot,
    pub roster: Arc<RosterStore>,
    pub agents: Arc<Agents>,
    /// Hand-off, assignment and relaying between customers and agents (the only user of
    /// the dispatcher and the bus).
    pub relay: Relay,
    pub limits: Arc<ConnectionLimits>,
    /// Failed sign-ins per address: agent tokens and admin tokens, counted apart.
    pub agent_auth_failures: FailureThrottle,
    pub admin_auth_failures: FailureThrottle,
    pub shutdown: Shutdown,
    pub ready: AtomicBool,
    pub metrics: PrometheusHandle,
    /// The durable conversation store (`None` when `store.url` is empty).
    pub store: Option<Arc<crate::store::Store>>,
    /// The durable log of live conversations (off without Redis routing or a store).
    pub journal: crate::journal::Journal,
    /// Who may use the admin API, and as what.
    pub operators: crate::operators::Operators,
    /// Two-step sign-in, sign-in history and the supervisors' alert channel.
    pub sign_in: Arc<crate::signin::SignIn>,
    /// Knowledge-base learning: misses, edits overlay, answer figures (issue #19).
    pub kb: crate::kb::Kb,
    /// Photos and files: upload caps, the link signer, the decode permits (issue #18).
    pub attachments: crate::attachments::Attachments,
    /// Checks customers' identity tokens (`None`: no secret configured, tokens refused).
    pub identity: Option<Arc<crate::identity::Verifier>>,
    next_conn: AtomicU64,
}

impl Shared {
    /// The roster name of an agent (its id if unknown).
    pub fn agent_name(&self, id: &str) -> String {
        self.roster.name_of(id)
    }

    /// Capacity of the ready agents of `group`, as of the last routing tick.
    pub fn group_capacity(&self, group: &str) -> u32 {
        self.relay.group_capacity(group)
    }

    /// A node-unique id for a connection, so a stale connection cannot detach a newer one.
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }
}

pub type AppState = Arc<Shared>;

/// A bound, not yet running gateway. Tests build it on port 0 and read [`Self::local_addr`].
pub struct Application {
    listener: TcpListener,
    state: AppState,
    events: tokio::sync::mpsc::Receiver<NodeEvent>,
}

impl Application {
    pub async fn build(mut settings: Settings) -> Result<Self, StartError> {
        if settings.dispatch.redis_url.as_deref() == Some("") {
            settings.dispatch.redis_url = None;
        }
        let kb_settings = settings.kb.clone();
        let bot = tokio::task::spawn_blocking(move || Bot::load(&kb_settings))
            .await
            .map_err(|_| crate::bot::BotError::PoolClosed)??;
        let roster_path = settings.agents.file.clone();
        let sign_in_queue = settings.limits.sign_in_queue;
        let store_settings = settings.store.clone();
        let (roster, keys) = tokio::task::spawn_blocking(move || {
            let keys = crate::signin::RosterKeys::load(&store_settings);
            RosterStore::load(&roster_path, sign_in_queue, keys.clone()).map(|r| (r, keys))
        })
        .await
        .map_err(|_| crate::bot::BotError::PoolClosed)??;
        settings.dispatch.validate()?;
        let store = if settings.store.enabled() {
            Some(Arc::new(crate::store::Store::open(&settings.store).await?))
        } else {
            None
        };
        let identity_settings = settings.identity.clone();
        let ring = store.as_ref().map(|s| s.key_ring());
        let identity = tokio::task::spawn_blocking(move || {
            crate::identity::Verifier::load(&identity_settings, ring.as_deref())
        })
        .await
        .map_err(|_| crate::bot::BotError::PoolClosed)??
        .map(Arc::new);
        let dispatcher = crate::dispatch::connect(&settings.dispatch).await?;
        let addr = settings.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let node_id = if settings.server.node_id.is_empty() {
            uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
        } else {
            settings.server.node_id.clone()
        };
        let journal =
            crate::journal::Journal::start(&settings.dispatch, store.clone(), &node_id).await?;
        let sessions = Arc::new(Sessions::with_journal(
            Duration::from_secs(settings.session.grace_period_s),
            SessionLimits {
                replay_frames: settings.session.replay_frames,
                dedup_ids: settings.session.dedup_ids,
                messages_per_second: settings.limits.messages_per_second,
                message_burst: settings.limits.message_burst,
                frames_per_second: settings.limits.frames_per_second,
                frame_burst: settings.limits.frame_burst,
                transcript_entries: settings.session.transcript_entries,
                transcript_bytes: settings.session.transcript_bytes,
            },
            journal.clone(),
        ));
        let (bus, events) = Bus::start(&settings.dispatch, &node_id).await?;
        let limits = ConnectionLimits::new(
            settings.limits.max_connections,
            settings.limits.max_connections_per_ip,
        );
        let operators = crate::operators::Operators::load(&settings.server.operators_file, &keys)
            .map_err(StartError::Operators)?;
        let sign_in = Arc::new(crate::signin::SignIn::new(
            &keys,
            store.clone(),
            &settings.sign_in,
        ));
        let store_for_kb = store.clone();
        let attachments =
            crate::attachments::Attachments::new(settings.attachments.clone(), store.clone());
        let roster = Arc::new(roster);
        let agents = Arc::new(Agents::default());
        let recorder = crate::records::Recorder::new(store.clone(), journal.clone(), &settings);
        let past = crate::continuity::Past::new(
            store.clone(),
            roster.clone(),
            settings.routing.last_agent_days,
        );
        let relay = Relay::new(routing::Parts {
            node_id: node_id.clone(),
            dispatcher,
            bus,
            sessions: sessions.clone(),
            agents: agents.clone(),
            journal: journal.clone(),
            roster: roster.clone(),
            recorder,
            past,
            routing: settings.routing.clone(),
            agent_grace_ms: settings.dispatch.agent_grace_ms,
            capacity: Default::default(),
        });
        let state = Arc::new(Shared {
            node_id,
            sessions,
            bot,
            roster,
            agents,
            relay,
            limits,
            agent_auth_failures: FailureThrottle::new(settings.limits.auth_failures_per_minute),
            admin_auth_failures: FailureThrottle::new(settings.limits.auth_failures_per_minute),
            shutdown: Shutdown::new(),
            ready: AtomicBool::new(false),
            metrics: telemetry::metrics_handle(),
            store,
            journal,
            operators,
            sign_in,
            kb: crate::kb::Kb::new(store_for_kb),
            attachments,
            identity,
            next_conn: AtomicU64::new(1),
            settings,
        });
        crate::kb::start(&state).await;
        Ok(Self {
            listener,
            state,
            events,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.settings.server.listen)
    }

    /// Serves until `shutdown` resolves, then drains: refuses new sessions, tells connected
    /// customers, waits for connections to end (at most `server.shutdown_timeout_ms`).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state;
        let chores = tokio::spawn(run_chores(state.clone()));
        let lag_probe = tokio::spawn(crate::telemetry::probe_runtime_lag());
        let events = tokio::spawn(run_events(state.clone(), self.events));
        if state.journal.is_shared() {
            // What this node's id held before a restart comes back here first.
            state.relay.take_orphans(true).await;
        } else {
            // One node with its log in the store: take back what was live before a restart.
            state.relay.restore_logged().await;
        }
        let app = router(state.clone());
        state.ready.store(true, Ordering::Release);
        tracing::info!(addr = %self.listener.local_addr()?, node = %state.node_id, "gateway listening");

        let drain_state = state.clone();
        let graceful = async move {
            shutdown.await;
            tracing::info!("shutting down: refusing new sessions, closing connected ones");
            drain_state.ready.store(false, Ordering::Release);
            drain_state.shutdown.trigger();
        };
        // Chat frames are small and often come in pairs (ack, then the answer): without
        // TCP_NODELAY the second waits for the client's delayed ACK (40-200 ms).
        let guarded = crate::listener::GuardedListener::new(
            self.listener,
            state.settings.limits.max_tcp_connections_per_ip,
            Duration::from_millis(state.settings.server.header_read_timeout_ms),
        );
        let listener = axum::serve::ListenerExt::tap_io(guarded, |tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(%err, "cannot set TCP_NODELAY");
            }
        });
        let serve = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(graceful);
        // Upgraded sockets are not tracked by axum's own drain; the connection budget is.
        let timeout = Duration::from_millis(state.settings.server.shutdown_timeout_ms);
        let result = serve.await;
        if !state.limits.wait_idle(timeout).await {
            tracing::warn!(
                open = state.limits.in_use(),
                "drain timed out with connections still open"
            );
        }
        chores.abort();
        lag_probe.abort();
        events.abort();
        state
            .relay
            .recorder
            .flush_on_shutdown(&state.sessions)
            .await;
        tracing::info!("gateway stopped");
        result
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws/customer", get(customer::upgrade))
        .route("/ws/agent", get(agent::upgrade))
        .route("/ws/supervisor", get(crate::signin::alerts::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/upload",
            axum::routing::post(crate::attachments::upload::upload)
                .options(crate::attachments::upload::preflight),
        )
        .route("/files/{id}", get(crate::attachments::files::file))
        .merge(admin::routes(&state))
        .merge(crate::web::routes())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::guard::guard,
        ))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Some(rss) = resident_memory_bytes() {
        metrics::gauge!(metric::PROCESS_RESIDENT_MEMORY_BYTES).set(rss as f64);
    }
    metrics::gauge!(metric::CONNECTIONS_ACTIVE).set(state.limits.in_use() as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

/// The process's resident memory from `/proc/self/status` (Linux only).
fn resident_memory_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// This node's routing events, one at a time, in arrival order.
async fn run_events(state: AppState, mut events: tokio::sync::mpsc::Receiver<NodeEvent>) {
    while let Some(event) = events.recv().await {
        let kind = event.kind();
        let started = std::time::Instant::now();
        state.relay.handle(event).await;
        metrics::histogram!(metric::NODE_EVENT_SECONDS, "kind" => kind)
            .record(started.elapsed().as_secs_f64());
    }
}

/// Periodic work: forget sessions past their grace period (leaving queues and agents),
/// routing upkeep, liveness, noticing knowledge-base and roster edits, tidy histograms.
async fn run_chores(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let ttl = state.settings.dispatch.node_ttl_ms;
    let heartbeat_every = Duration::from_millis((ttl / 3).max(100));
    let mut last_heartbeat: Option<tokio::time::Instant> = None;
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        if last_heartbeat.is_none_or(|t| t.elapsed() >= heartbeat_every) {
            last_heartbeat = Some(tokio::time::Instant::now());
            if let Err(err) = state.relay.dispatcher.heartbeat(&state.node_id, ttl).await {
                tracing::error!(error = %err, "heartbeat failed");
            }
        }
        if n.is_multiple_of(5) {
            let app = state.clone();
            tokio::spawn(async move { app.journal.forget_due(app.store.as_deref()).await });
        }
        if n.is_multiple_of(3) && state.journal.is_shared() {
            let app = state.clone();
            tokio::spawn(async move { app.relay.take_orphans(false).await });
        }
        for session in state.sessions.reap_expired() {
            state.relay.end_chat(&session, "expired", false).await;
        }
        state.relay.tick().await;
        state.agents.reap(Duration::from_millis(
            state.settings.dispatch.agent_grace_ms,
        ));
        if n.is_multiple_of(5) {
            state.roster.reload_if_changed().await;
        }
        if n.is_multiple_of(5) {
            state.metrics.run_upkeep();
        }
        let retention_every = state.settings.store.retention_interval_s.max(1);
        if n == 1 || n.is_multiple_of(retention_every) {
            let app = state.clone();
            tokio::spawn(async move {
                if let Some(store) = &app.store {
                    records::retention::run_once(store, app.settings.store.retention_days).await;
                }
                app.sign_in.prune().await;
            });
        }
        let watch = state.settings.kb.watch_interval_s;
        if watch > 0 && n.is_multiple_of(watch) {
            state.bot.reload_if_changed().await;
        }
    }
}
