#![allow(clippy::unwrap_used)]
//! The retry budget next to tower's `TpsBudget`, whose integer token
//! arithmetic (`withdraw = (1 / ratio) as isize`) drifts from the configured
//! ratio.

use std::time::Duration;

use sinew_retry::RetryBudget;
use tower::retry::budget::{Budget, TpsBudget};

fn granted_by_tower(ratio: f32, deposits: usize) -> usize {
    let b = TpsBudget::new(Duration::from_secs(10), 0, ratio);
    for _ in 0..deposits {
        b.deposit();
    }
    (0..deposits).take_while(|_| b.withdraw()).count()
}

fn granted_by_sinew(ratio: f64, deposits: usize) -> usize {
    let b = RetryBudget::new(Duration::from_secs(10), 0, ratio).unwrap();
    for _ in 0..deposits {
        b.deposit();
    }
    (0..deposits).take_while(|_| b.try_withdraw()).count()
}

#[tokio::test(start_paused = true)]
async fn ratios_are_honoured_where_tower_drifts() {
    // 30 %: tower withdraws 3 tokens per retry (1/0.3 truncated), so grants
    // one retry per 3 requests.
    assert_eq!(granted_by_tower(0.3, 1000), 333);
    assert_eq!(granted_by_sinew(0.3, 1000), 300);
    // 0.7 %: 1/0.007 = 142.86 → 142.
    assert_eq!(granted_by_tower(0.007, 100_000), 704);
    assert_eq!(granted_by_sinew(0.007, 100_000), 700);
    // 0.15 %.
    assert_eq!(granted_by_sinew(0.0015, 10_000), 15);
    // 60 %: tower's 1/0.6 = 1.67 → 1: every request may be retried.
    assert_eq!(granted_by_tower(0.6, 1000), 1000);
    assert_eq!(granted_by_sinew(0.6, 1000), 600);
}
