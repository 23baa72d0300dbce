//! The sinew server stack under test: metrics → verify → deadline/priority
//! → shedding, built by the facade's `ServerStack`.

use sinew::server::ServerStack;
use sinew::sign::{SecretKey, StaticKeyStore, Verifier, VerifyConfig, VerifySignatureLayer};
use sinew_deadline::{ShedConfig, ShedLayer};
use sinew_metrics::ServerMetricsLayer;

/// The app behind metrics -> verify -> deadline/priority -> shedding.
pub(crate) fn wrap(app: axum::Router) -> axum::Router {
    let keys = match SecretKey::from_text(crate::sinew_stack::KEY_TEXT) {
        Ok(k) => StaticKeyStore::new().with_key(crate::sinew_stack::KEY_ID, k),
        Err(_) => StaticKeyStore::new(),
    };
    app.layer(
        ServerStack::new()
            .metrics(ServerMetricsLayer::new())
            // The replay cache must hold every signature of the window:
            // at ~60 000 req/s for a 60 s window, 4 million entries (the
            // default, 1 000 000 over 330 s, sustains ~3 000 req/s).
            .verify(VerifySignatureLayer::new(Verifier::new(
                VerifyConfig::default()
                    .max_age(std::time::Duration::from_secs(60))
                    .replay_capacity(4_000_000),
                keys,
            )))
            .shed(ShedLayer::new(ShedConfig {
                max_concurrency: 1024,
                ..ShedConfig::default()
            })),
    )
}
