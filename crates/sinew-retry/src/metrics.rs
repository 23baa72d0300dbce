//! The counters of this crate, through the `metrics` facade.
//!
//! | name | labels | counts |
//! | --- | --- | --- |
//! | `sinew_retry_attempts_total` | `reason`: the failure retried (`503`, `connect`, `timeout`, …) | retry attempts started |
//! | `sinew_retry_not_retried_total` | `reason`: `method`, `opted_out`, `body_not_replayable`, `max_attempts`, `circuit_open`, `retry_after_too_long`, `deadline`, `budget_exhausted` | failures returned without a retry |
//! | `sinew_retry_budget_exhausted_total` | | failures returned because the retry budget was spent |
//! | `sinew_hedge_attempts_total` | | hedged attempts started |
//! | `sinew_hedge_wins_total` | `attempt`: `first` or `hedge` | calls answered, by which attempt won |
//! | `sinew_hedge_budget_exhausted_total` | | hedges not sent because the budget was spent |

/// `sinew_retry_attempts_total`.
pub const RETRY_ATTEMPTS_TOTAL: &str = "sinew_retry_attempts_total";
/// `sinew_retry_not_retried_total`.
pub const RETRY_NOT_RETRIED_TOTAL: &str = "sinew_retry_not_retried_total";
/// `sinew_retry_budget_exhausted_total`.
pub const RETRY_BUDGET_EXHAUSTED_TOTAL: &str = "sinew_retry_budget_exhausted_total";
/// `sinew_hedge_attempts_total`.
pub const HEDGE_ATTEMPTS_TOTAL: &str = "sinew_hedge_attempts_total";
/// `sinew_hedge_wins_total`.
pub const HEDGE_WINS_TOTAL: &str = "sinew_hedge_wins_total";
/// `sinew_hedge_budget_exhausted_total`.
pub const HEDGE_BUDGET_EXHAUSTED_TOTAL: &str = "sinew_hedge_budget_exhausted_total";

pub(crate) fn retry_attempt(reason: &'static str) {
    metrics::counter!(RETRY_ATTEMPTS_TOTAL, "reason" => reason).increment(1);
}

pub(crate) fn not_retried(reason: &'static str) {
    metrics::counter!(RETRY_NOT_RETRIED_TOTAL, "reason" => reason).increment(1);
}

pub(crate) fn budget_exhausted() {
    metrics::counter!(RETRY_BUDGET_EXHAUSTED_TOTAL).increment(1);
}

pub(crate) fn hedge_attempt() {
    metrics::counter!(HEDGE_ATTEMPTS_TOTAL).increment(1);
}

pub(crate) fn hedge_win(hedge: bool) {
    let attempt = if hedge { "hedge" } else { "first" };
    metrics::counter!(HEDGE_WINS_TOTAL, "attempt" => attempt).increment(1);
}

pub(crate) fn hedge_budget_exhausted() {
    metrics::counter!(HEDGE_BUDGET_EXHAUSTED_TOTAL).increment(1);
}
