//! kefu gateway (work in progress)
