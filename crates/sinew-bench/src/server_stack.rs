//! The sinew server stack under test.
//!
//! Work in progress: the server layers (verify, deadline/priority, metrics,
//! shedding) are wrapped here as each lands; until then this is the bare app
//! and the `sinew-server` rows measure nothing but a second axum server.

/// The app behind verify -> deadline/priority -> metrics -> shedding.
pub(crate) fn wrap(app: axum::Router) -> axum::Router {
    app
}
