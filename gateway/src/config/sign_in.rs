//! `[sign_in]`: two-step sign-in and abnormal sign-in alerts (see [`crate::signin`]).

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInSettings {
    /// How long an enrolled agent whose URL had no `otp` has to send the `otp` frame.
    pub otp_frame_timeout_ms: u64,
    /// How long a sign-in pass (given after a good code) stands in for a new code.
    pub pass_ttl_s: u64,
    /// A sign-in from an address or user agent the account has not used for this many days
    /// raises a `new_sign_in` alert; history older than this is deleted.
    pub history_days: u64,
    /// Accounts whose recent sign-ins are kept in memory (all of them when the store is off).
    pub history_accounts: usize,
    /// Alerts queued for each connected supervisor; one further behind is disconnected.
    pub alert_queue: usize,
}
