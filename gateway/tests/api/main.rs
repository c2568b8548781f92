//! Integration tests: the real gateway on port 0, real WebSocket clients.

mod agents;
mod bad_input;
mod bot;
mod customer;
mod helpers;
mod operations;
#[path = "../support/mod.rs"]
mod support;
