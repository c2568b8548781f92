//! kefu gateway: customer and agent chat sessions over WebSocket for e-commerce customer
//! service.
//!
//! Layout, one module per concern (imports point down this list's layers: the sockets and
//! HTTP use the relay, records and sessions; those use the log, the store, the dispatcher
//! and the protocol; nothing below imports `app` or HTTP types):
//!
//! - `app`: builds the node from the settings, its routes, chores and the drain on shutdown;
//!   the only module that sees every part.
//! - `customer`: the customer socket (`/ws/customer`): greeting, resume, the bot's turn.
//! - `agent`: the agent socket (`/ws/agent`): sign-in, the agent's frames into the relay.
//! - `connection`: the connection loop both sockets share, generic over `Sink`/`Stream`.
//! - `admin`: the admin API as a layer: the gate, the `Caller`/`Operator` extractors,
//!   `AdminError`, records, reports, audit and knowledge-base edits over HTTP.
//! - `web`: the embedded widget, console and supervisor pages and the supervisor view.
//! - `attachments`: photos and files (`POST /upload`, signed `/files/…` links).
//! - `guard`: origin allow-lists and the sign-in failure throttle in front of every route.
//! - `listener`: the accept loop's per-IP TCP budget and header deadline.
//! - `routing`: the relay between customers, agents and the dispatcher, across nodes (bus).
//! - `agents`: the agents connected to this node and delivery of frames to them.
//! - `records`: what is kept of a chat once it ends: the record, survey, retention, reports.
//! - `continuity`: one customer across sessions: history for the agent, the last agent.
//! - `tickets`: messages left when nobody is there, claimed and answered by agents.
//! - `hours`: business hours per skill group.
//! - `identity`: identity tokens (HS256) from the shop's backend, hashed customer ids.
//! - `orders`: the shop's order endpoint (signed, bounded, cached) for agents and the bot.
//! - `bot`: the knowledge-base bot, searched on the blocking pool, reloadable.
//! - `kb`: what the bot missed, edits without a restart (a store overlay), answer figures.
//! - `leaks`: interception of agent messages that would take a customer off the platform.
//! - `session`: a customer session: its state and transitions, its conversation facts,
//!   numbered replayable frames, rebuilt from the log on any node.
//! - `outbox`: numbered, replayable, bounded outbound frames for one party.
//! - `journal`: the durable conversation log (Redis streams or the store), leases, fencing.
//! - `dispatch`: the queues and the least-loaded assignment (in memory or Redis, with Lua).
//! - `store`: the encrypted conversation store (SQLite or PostgreSQL) and its stored types.
//! - `signin`: two-step sign-in (TOTP), sign-in history, `new_sign_in` alerts.
//! - `roster`, `operators`: who may sign in as an agent or operator, reloadable.
//! - `limits`: connection budgets and per-session rate limits.
//! - `protocol`: the JSON frames of the wire protocol, transcript lines and milestones.
//! - `mask`, `redact`: personal data masked toward agents; text kept out of `Debug` and logs.
//! - `config`: typed settings (embedded file, `--config`, `KEFU__…`), validated on load.
//! - `files`: paths relative to the config and a file watch shared by the bot and roster.
//! - `telemetry`: logs and the Prometheus metrics, every metric name described in one place.
//! - `shutdown`: the node-wide stop signal.
//! - `allocator`: how the binary's allocator gives freed memory back to the kernel.

pub(crate) mod admin;
pub(crate) mod agent;
pub(crate) mod agents;
pub mod allocator;
pub(crate) mod app;
pub(crate) mod attachments;
pub(crate) mod bot;
pub mod config;
pub(crate) mod connection;
pub(crate) mod continuity;
pub(crate) mod customer;
pub mod dispatch;
pub(crate) mod files;
pub(crate) mod guard;
pub(crate) mod hours;
pub(crate) mod identity;
pub(crate) mod journal;
pub(crate) mod kb;
pub(crate) mod leaks;
pub(crate) mod limits;
pub(crate) mod listener;
pub mod mask;
pub(crate) mod operators;
pub mod orders;
pub mod outbox;
pub mod protocol;
pub mod records;
pub(crate) mod redact;
pub mod roster;
pub(crate) mod routing;
pub mod session;
pub mod shutdown;
pub mod signin;
pub mod store;
pub mod telemetry;
pub(crate) mod tickets;
pub(crate) mod web;

pub use app::{Application, StartError};
pub use config::Settings;
