//! Helpers shared by the integration tests and benches.

pub(crate) mod hostile;
