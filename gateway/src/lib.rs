//! kefu gateway: customer and agent chat sessions over WebSocket for e-commerce customer
//! service.
//!
//! Layout, one module per concern:
//! - [`config`]: typed settings (embedded `config/gateway.toml`, file, `KEFU__…` environment);
//! - [`protocol`]: the JSON frames of the wire protocol and their stable error codes;
//! - [`session`]: a customer session as a state machine with numbered, replayable frames;
//!   rebuilt from its log on any node;
//! - [`journal`]: the durable conversation log (Redis streams per session, or the store's
//!   `kefu_log`), its group-commit writer, leases with epoch fencing, takeover of dead nodes'
//!   sessions;
//! - [`customer`]: the customer socket's connection loop (greeting first, resume, limits);
//! - [`bot`]: the knowledge-base bot, searched on the blocking pool, reloadable;
//! - [`kb`]: what the bot missed, KB edits without a restart (a store overlay), answer figures;
//! - [`limits`]: connection budgets and per-session rate limits;
//! - [`attachments`]: photos and files (`POST /upload`, signed `/files/…` links), cards;
//! - [`dispatch`]: routing of waiting customers to agents (in-memory or Redis);
//! - [`admin`]: the admin HTTP API `/admin/*` behind one authorizing layer per permission;
//! - [`server`]: binding, routes, readiness, chores and the drain on shutdown;
//! - [`store`], [`records`]: the encrypted conversation store, survey and complaints,
//!   retention and reports;
//! - [`signin`]: two-step sign-in (TOTP) for agents and operators, sign-in history and
//!   `new_sign_in` alerts, the supervisors' alert socket `/ws/supervisor`;
//! - [`identity`], [`continuity`], [`hours`], [`tickets`]: identified customers across
//!   sessions and channels, their history for the agent, business hours and messages left
//!   when nobody is there (issue #17);
//! - [`shutdown`], [`telemetry`]: the stop signal; logs and Prometheus metrics.

pub(crate) mod admin;
pub(crate) mod agent;
pub(crate) mod agents;
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
pub mod outbox;
pub mod protocol;
pub mod records;
pub(crate) mod redact;
pub mod roster;
pub(crate) mod routing;
pub(crate) mod server;
pub mod session;
pub mod shutdown;
pub mod signin;
pub mod store;
pub mod telemetry;
pub(crate) mod tickets;
pub(crate) mod web;

pub use config::Settings;
pub use server::{Application, StartError};
