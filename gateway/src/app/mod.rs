//! The node: the one module that sees every part. It builds them from the settings, hands
//! each the narrow handles it uses (the relay, the recorder, the store, the bot), serves the
//! routes ([`routes`]), runs the chores ([`chores`]) and drains on shutdown.

mod chores;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

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
use crate::{routing, telemetry};

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
    #[error(transparent)]
    Orders(#[from] crate::orders::OrdersError),
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
    /// The shop's order endpoint (`None`: `integrations.orders_url` is empty).
    pub orders: Option<Arc<crate::orders::Orders>>,
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
        let (integrations, identity_settings) =
            (settings.integrations.clone(), settings.identity.clone());
        let orders = tokio::task::spawn_blocking(move || {
            crate::orders::Orders::load(&integrations, &identity_settings)
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
            awaiting: Default::default(),
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
            orders,
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
        let chores = tokio::spawn(chores::run_chores(state.clone()));
        let lag_probe = tokio::spawn(crate::telemetry::probe_runtime_lag());
        let events = tokio::spawn(chores::run_events(state.clone(), self.events));
        if state.journal.is_shared() {
            // What this node's id held before a restart comes back here first.
            state.relay.take_orphans(true).await;
        } else {
            // One node with its log in the store: take back what was live before a restart.
            state.relay.restore_logged().await;
        }
        let app = routes::router(state.clone());
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
