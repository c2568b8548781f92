//! Routing of waiting customers to agents (work in progress).
