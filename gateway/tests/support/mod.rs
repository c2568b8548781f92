//! Helpers shared by the gateway's integration tests (`mod support;` in a test file).
//!
//! * [`redis_server::RedisServer`]: a throw-away `redis-server` (or `REDIS_URL`) plus unique key
//!   prefixes, so Redis tests are isolated and never touch a system Redis on 6379.
//! * [`dispatch_env`]: dispatcher fixtures that run one test body on both backends.

// Each test binary compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub mod dispatch_env;
pub mod redis_server;
