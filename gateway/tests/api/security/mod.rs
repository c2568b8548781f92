//! Hostile clients (issue #15): each attack against the real gateway, asserting its specific
//! outcome and, where it matters, that an unrelated customer is still greeted meanwhile.

mod flood;
mod frames;
mod memory;
mod pages;
mod signin;
mod takeover;
mod upgrades;
