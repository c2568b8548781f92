//! kefu gateway (work in progress)
pub mod dispatch;
