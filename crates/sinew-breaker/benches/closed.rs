//! Closed-state overhead of the breaker (filled in below).
fn main() {}
