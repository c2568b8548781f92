//! Every metric the gateway records, named once.
//!
//! Call sites pass these constants to `metrics::counter!` / `gauge!` / `histogram!` instead of
//! bare strings, so a name cannot be misspelt in one place (a silent new series on the
//! dashboard) and every series has a `# HELP` line: [`describe`] registers each entry's doc
//! comment as its description when the recorder is installed.
//!
//! The names, label keys and label values are what operators' dashboards, the load tool and
//! the tests scrape from `/metrics`: renaming one is a protocol change, not a refactoring.
//! Label keys are listed in the doc comments ("by ..."); their values stay at the call sites.

/// One table, two outputs: a documented `pub const` per metric and the `describe` function
/// that hands the same doc text (lines joined by spaces) to the recorder with the kind and
/// unit given here. A metric cannot have a name without a description, or the other way round.
macro_rules! metrics {
    ($(
        $(#[doc = $doc:literal])+
        $kind:ident $(($unit:ident))? $constant:ident = $name:literal;
    )+) => {
        $(
            $(#[doc = $doc])+
            pub const $constant: &str = $name;
        )+

        /// Registers every metric's description (and unit) with the installed recorder.
        /// Called once, from [`super::metrics_handle`]; series appear only once recorded.
        pub(super) fn describe() {
            $( describe_one!($kind $(($unit))?, $name, help(&[$($doc),+])); )+
        }

        /// Every name of the table (tests check they are unique and well formed).
        #[cfg(test)]
        const ALL: &[&str] = &[$($name),+];
    };
}

macro_rules! describe_one {
    (counter $(($unit:ident))?, $name:expr, $help:expr) => {
        metrics::describe_counter!($name, $(metrics::Unit::$unit,)? $help)
    };
    (gauge $(($unit:ident))?, $name:expr, $help:expr) => {
        metrics::describe_gauge!($name, $(metrics::Unit::$unit,)? $help)
    };
    (histogram $(($unit:ident))?, $name:expr, $help:expr) => {
        metrics::describe_histogram!($name, $(metrics::Unit::$unit,)? $help)
    };
}

/// A doc comment as one help line: its lines trimmed and joined by single spaces.
fn help(lines: &[&str]) -> String {
    let words: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty())
        .collect();
    words.join(" ")
}

metrics! {
    // Connections and frames.
    /// open WebSocket connections
    gauge(Count) CONNECTIONS_ACTIVE = "kefu_connections_active";
    /// upgrades refused, by reason
    counter CONNECTIONS_REJECTED_TOTAL = "kefu_connections_rejected_total";
    /// accepts held back (new connections left in the kernel's backlog), by reason
    counter ACCEPT_PAUSED_TOTAL = "kefu_accept_paused_total";
    /// accept calls that failed (descriptors exhausted and the like) and were backed off
    counter ACCEPT_ERRORS_TOTAL = "kefu_accept_errors_total";
    /// frames received from clients
    counter FRAMES_IN_TOTAL = "kefu_frames_in_total";
    /// frames written to clients
    counter FRAMES_OUT_TOTAL = "kefu_frames_out_total";
    /// frames not delivered on purpose (over the rate budget, ephemeral behind), by reason
    counter FRAMES_DROPPED_TOTAL = "kefu_frames_dropped_total";
    /// error frames sent, by code
    counter ERRORS_TOTAL = "kefu_errors_total";
    /// connections dropped because they did not keep up
    counter SLOW_CONSUMERS_TOTAL = "kefu_slow_consumers_total";
    /// from accepted upgrade to greeting written
    histogram(Seconds) GREETING_LATENCY_SECONDS = "kefu_greeting_latency_seconds";

    // Sessions.
    /// customer sessions held, attached or within grace
    gauge SESSIONS_ACTIVE = "kefu_sessions_active";
    /// sessions forgotten after their grace period
    counter SESSIONS_EXPIRED_TOTAL = "kefu_sessions_expired_total";
    /// sessions rebuilt from the conversation log after a restart
    counter SESSIONS_RESUMED_FROM_LOG_TOTAL = "kefu_sessions_resumed_from_log_total";
    /// sessions adopted from nodes that are gone
    counter SESSIONS_TAKEN_OVER_TOTAL = "kefu_sessions_taken_over_total";
    /// lines or messages refused because the session's transcript is full
    counter TRANSCRIPT_FULL_TOTAL = "kefu_transcript_full_total";
    /// sessions that presented a valid identity token
    counter IDENTIFIED_SESSIONS_TOTAL = "kefu_identified_sessions_total";
    /// identity tokens refused, by why
    counter IDENTITY_REFUSED_TOTAL = "kefu_identity_refused_total";
    /// pages of a returning customer's earlier conversations read
    counter HISTORY_READS_TOTAL = "kefu_history_reads_total";
    /// earlier conversations not loaded in time (the chat went on without them)
    counter HISTORY_TIMEOUTS_TOTAL = "kefu_history_timeouts_total";

    // Node, runtime and process.
    /// how late a 10 ms timer of the node fires: time every task of the node waited for a
    /// runtime thread (the node's share of a busy machine)
    histogram(Seconds) RUNTIME_LAG_SECONDS = "kefu_runtime_lag_seconds";
    /// time the node's event task spent on one routing event, by kind (every event of the
    /// node waits behind the one being handled)
    histogram(Seconds) NODE_EVENT_SECONDS = "kefu_node_event_seconds";
    /// resident memory of the gateway process, read when /metrics is scraped
    gauge(Bytes) PROCESS_RESIDENT_MEMORY_BYTES = "process_resident_memory_bytes";
    /// node events handed to the owning node over the bus
    counter EVENTS_FORWARDED_TOTAL = "kefu_events_forwarded_total";
    /// node events published again because no node was subscribed yet
    counter BUS_REPUBLISHED_TOTAL = "kefu_bus_republished_total";
    /// local node events that waited for room in the event task's queue
    counter BUS_BACKPRESSURE_TOTAL = "kefu_bus_backpressure_total";
    /// node events published with no subscriber (the node down?)
    counter BUS_UNDELIVERED_TOTAL = "kefu_bus_undelivered_total";
    /// node events that could not be published
    counter BUS_ERRORS_TOTAL = "kefu_bus_errors_total";

    // Bot and knowledge base.
    /// bot decisions on a question, by decision
    counter BOT_ANSWERS_TOTAL = "kefu_bot_answers_total";
    /// answer-cache lookups, by result
    counter BOT_CACHE_TOTAL = "kefu_bot_cache_total";
    /// clarifying questions asked by the bot
    counter BOT_CLARIFY_TOTAL = "kefu_bot_clarify_total";
    /// knowledge-base searches that failed
    counter BOT_FAILURES_TOTAL = "kefu_bot_failures_total";
    /// customers' feedback on a bot answer, by helpful
    counter BOT_FEEDBACK_TOTAL = "kefu_bot_feedback_total";
    /// from a customer's question to the bot's answer
    histogram(Seconds) BOT_LATENCY_SECONDS = "kefu_bot_latency_seconds";
    /// knowledge-base reloads, by result
    counter KB_RELOADS_TOTAL = "kefu_kb_reloads_total";
    /// knowledge-base overlays applied
    counter KB_OVERLAY_APPLIED_TOTAL = "kefu_kb_overlay_applied_total";
    /// knowledge-base overlays refused (the old index kept)
    counter KB_OVERLAY_REFUSED_TOTAL = "kefu_kb_overlay_refused_total";
    /// missed questions stored for the knowledge-base editors
    counter KB_MISSES_TOTAL = "kefu_kb_misses_total";
    /// missed questions dropped (queue full or store failing)
    counter KB_MISSES_DROPPED_TOTAL = "kefu_kb_misses_dropped_total";
    /// answer statistics not counted because their table is full
    counter KB_STATS_DROPPED_TOTAL = "kefu_kb_stats_dropped_total";
    /// bot offers not followed up because the table of recent offers is full
    counter KB_FOLLOWED_FULL_TOTAL = "kefu_kb_followed_full_total";

    // Hand-offs, queues and agents.
    /// conversations handed to a human, by trigger
    counter HANDOFFS_TOTAL = "kefu_handoffs_total";
    /// customers waiting for a human, by group
    gauge QUEUE_LENGTH = "kefu_queue_length";
    /// from hand-off to assignment
    histogram(Seconds) QUEUE_WAIT_SECONDS = "kefu_queue_wait_seconds";
    /// enqueue attempts retried
    counter DISPATCH_RETRIES_TOTAL = "kefu_dispatch_retries_total";
    /// hand-offs that could not be enqueued
    counter DISPATCH_ERRORS_TOTAL = "kefu_dispatch_errors_total";
    /// returning customers routed with their last agent in mind, by outcome
    counter LAST_AGENT_TOTAL = "kefu_last_agent_total";
    /// waiting customers an agent group was warned about
    counter SLA_WARNINGS_TOTAL = "kefu_sla_warnings_total";
    /// greetings sent on an agent's behalf at assignment
    counter AGENT_AUTO_GREETINGS_TOTAL = "kefu_agent_auto_greetings_total";
    /// from assignment to the agent's first reply
    histogram(Seconds) AGENT_FIRST_REPLY_SECONDS = "kefu_agent_first_reply_seconds";
    /// agent reconnects whose replay had a gap (their chats rebuilt)
    counter AGENT_REBUILDS_TOTAL = "kefu_agent_rebuilds_total";
    /// agent messages blocked by a leak rule, by rule
    counter LEAKS_BLOCKED_TOTAL = "kefu_leaks_blocked_total";
    /// customers told no human is available, by reason
    counter OFFLINE_TOTAL = "kefu_offline_total";

    // Tickets (messages left while nobody was there).
    /// tickets left by customers
    counter TICKETS_CREATED_TOTAL = "kefu_tickets_created_total";
    /// tickets claimed by an agent
    counter TICKETS_CLAIMED_TOTAL = "kefu_tickets_claimed_total";
    /// tickets answered by an agent
    counter TICKETS_ANSWERED_TOTAL = "kefu_tickets_answered_total";
    /// tickets answered after their promised time
    counter TICKETS_LATE_TOTAL = "kefu_tickets_late_total";
    /// ticket answers delivered to the customer
    counter TICKETS_DELIVERED_TOTAL = "kefu_tickets_delivered_total";

    // Sign-in, admin and attachments.
    /// sign-ins refused, by socket
    counter AUTH_FAILURES_TOTAL = "kefu_auth_failures_total";
    /// agent sign-ins refused at once because the verification queue was full
    counter AUTH_BUSY_TOTAL = "kefu_auth_busy_total";
    /// sign-ins from a new place, device or for the first time, by role
    counter SIGN_IN_ALERTS_TOTAL = "kefu_sign_in_alerts_total";
    /// admin calls made with the break-glass token
    counter ADMIN_BREAK_GLASS_TOTAL = "kefu_admin_break_glass_total";
    /// attachment uploads, by outcome
    counter UPLOADS_TOTAL = "kefu_uploads_total";
    /// size of an uploaded attachment
    histogram(Bytes) UPLOAD_BYTES = "kefu_upload_bytes";
    /// attachment reads, by outcome (an HTTP status)
    counter FILE_READS_TOTAL = "kefu_file_reads_total";
    /// attachment chunks sealed and written together
    histogram(Count) ATTACHMENT_CHUNK_BATCH = "kefu_attachment_chunk_batch";

    // The shop's order data (integrations.orders_url).
    /// order lookups at the shop's endpoint, by outcome (ok, cached, timeout, error, refused,
    /// bad_answer)
    counter ORDER_LOOKUPS_TOTAL = "kefu_order_lookups_total";
    /// time the shop's order endpoint took to answer (or to time out)
    histogram(Seconds) ORDER_LOOKUP_SECONDS = "kefu_order_lookup_seconds";
    /// bot answers about an order, by source (live: the shop's status; general: the KB's text)
    counter ORDER_ANSWERS_TOTAL = "kefu_order_answers_total";

    // Conversation log (journal).
    /// time to commit one batch of the conversation log
    histogram(Seconds) JOURNAL_COMMIT_SECONDS = "kefu_journal_commit_seconds";
    /// entries in one commit of the conversation log
    histogram(Count) JOURNAL_BATCH_ENTRIES = "kefu_journal_batch_entries";
    /// conversation log writes that failed and were retried
    counter JOURNAL_ERRORS_TOTAL = "kefu_journal_errors_total";
    /// appends refused because another node owns the session's log now
    counter JOURNAL_FENCED_TOTAL = "kefu_journal_fenced_total";
    /// log entries that could not be opened and were skipped
    counter JOURNAL_BAD_ENTRIES_TOTAL = "kefu_journal_bad_entries_total";
    /// ended sessions whose log is left to expire (the list to delete was full)
    counter JOURNAL_FORGET_DROPPED_TOTAL = "kefu_journal_forget_dropped_total";
    /// time of one checkpoint of the SQLite log: readying a half (by="checkpointer"), or the
    /// writer copying the half it writes itself (by="writer", only when nobody else does)
    histogram(Seconds) JOURNAL_CHECKPOINT_SECONDS = "kefu_journal_checkpoint_seconds";
    /// time to delete one group of ended sessions' logs from the SQLite log file
    histogram(Seconds) JOURNAL_FORGET_SECONDS = "kefu_journal_forget_seconds";
    /// frames a half of the SQLite conversation log had in its WAL when it was last copied whole
    gauge JOURNAL_WAL_FRAMES = "kefu_journal_wal_frames";

    // Conversation store and records.
    /// conversation records waiting for the store writer
    gauge(Count) STORE_QUEUE_DEPTH = "kefu_store_queue_depth";
    /// records that waited because the store queue was full
    counter STORE_QUEUE_FULL_TOTAL = "kefu_store_queue_full_total";
    /// conversation store writes that failed
    counter STORE_WRITE_ERRORS_TOTAL = "kefu_store_write_errors_total";
    /// conversation store reads that failed
    counter STORE_READ_ERRORS_TOTAL = "kefu_store_read_errors_total";
    /// conversation records stored
    counter CONVERSATIONS_STORED_TOTAL = "kefu_conversations_stored_total";
    /// conversations closed, by reason
    counter CONVERSATIONS_CLOSED_TOTAL = "kefu_conversations_closed_total";
    /// records deleted past their retention
    counter RETENTION_DELETED_TOTAL = "kefu_retention_deleted_total";
    /// from hand-off to a human's first response
    histogram(Seconds) FIRST_RESPONSE_SECONDS = "kefu_first_response_seconds";
    /// from the conversation's start to its close
    histogram(Seconds) TIME_TO_RESOLVE_SECONDS = "kefu_time_to_resolve_seconds";
    /// closed conversations, by resolved at first contact
    counter FIRST_CONTACT_RESOLUTION_TOTAL = "kefu_first_contact_resolution_total";
    /// greetings against their promised time, by met
    counter GREETING_SLA_TOTAL = "kefu_greeting_sla_total";
    /// satisfaction survey answers, by score
    counter SURVEY_ANSWERS_TOTAL = "kefu_survey_answers_total";
    /// satisfaction survey scores
    histogram SURVEY_SCORE = "kefu_survey_score";
    /// low survey scores escalated as complaints, by level
    counter SURVEY_ESCALATIONS_TOTAL = "kefu_survey_escalations_total";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_prometheus_shaped() {
        let mut seen = std::collections::HashSet::new();
        for name in ALL {
            assert!(seen.insert(name), "{name} twice");
            assert!(
                name.starts_with("kefu_") || name.starts_with("process_"),
                "{name}"
            );
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
        }
    }

    #[test]
    fn help_joins_doc_lines() {
        assert_eq!(
            help(&[" how late a", " timer fires"]),
            "how late a timer fires"
        );
    }

    #[test]
    fn recorded_series_carry_their_description() {
        let handle = super::super::metrics_handle();
        metrics::counter!(AGENT_REBUILDS_TOTAL).increment(0);
        metrics::histogram!(RUNTIME_LAG_SECONDS).record(0.0);
        let text = handle.render();
        assert!(text.contains("# HELP kefu_agent_rebuilds_total agent reconnects whose replay"));
        let lag = "# HELP kefu_runtime_lag_seconds how late a 10 ms timer of the node fires: time \
                   every task of the node waited for a runtime thread (the node's share of a \
                   busy machine)\n";
        assert!(text.contains(lag), "{text}");
    }

    /// A bare name at a call site would bypass the table (and its description).
    #[test]
    fn call_sites_use_the_table() {
        fn walk(dir: &std::path::Path, bad: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).expect("source dir").flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, bad);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("source file");
                    let squeezed: String = text.split_whitespace().collect();
                    for mac in ["counter!(\"", "gauge!(\"", "histogram!(\""] {
                        if squeezed.contains(mac) {
                            bad.push(format!("{}: {mac}", path.display()));
                        }
                    }
                }
            }
        }
        let mut bad = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut bad,
        );
        assert!(
            bad.is_empty(),
            "metric names outside telemetry::metric: {bad:?}"
        );
    }
}
