//! Integration tests: the real gateway on port 0, real WebSocket clients.

// Tests fail loudly on anything unexpected; that is what unwrap is for here.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agents;
mod attachments;
mod bad_input;
mod bot;
mod continuity;
mod customer;
mod durable;
mod helpers;
mod kb;
mod operations;
mod operators;
mod orders;
mod privacy;
mod privacy_logs;
mod privacy_store;
mod records;
mod security;
mod sign_in_alerts;
#[path = "../support/mod.rs"]
mod support;
mod two_step;
