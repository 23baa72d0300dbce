//! serde helpers for config durations (`"250ms"`, `"2s"`).

#[cfg(feature = "serde")]
pub(crate) use sinew_core::config::duration;
