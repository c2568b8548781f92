//! faq-index (work in progress)
