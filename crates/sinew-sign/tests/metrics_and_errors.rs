//! Counters, problem documents and what errors may show.
#![allow(clippy::unwrap_used)]

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use sinew_core::FixedClock;
use sinew_sign::{
    Rejection, SecretKey, SignConfig, Signer, StaticKeyStore, Verifier, VerifyConfig,
};

const NOW: u64 = 1_763_000_000;
const SECRET: &str = "very-secret-key-material";

fn signed() -> http::request::Parts {
    signed_at(NOW)
}

fn signed_at(now: u64) -> http::request::Parts {
    let signer = Signer::new(
        SignConfig::rfc9421("orders"),
        SecretKey::from_text(SECRET).unwrap(),
    )
    .unwrap()
    .with_clock(FixedClock::at_unix(now));
    let mut parts = http::Request::post("http://inventory.internal/reserve")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    signer.sign(&mut parts, b"{}").unwrap();
    parts
}

fn verifier(capacity: usize) -> Verifier {
    Verifier::new(
        VerifyConfig::default().replay_capacity(capacity),
        StaticKeyStore::new().with_key("orders", SecretKey::from_text(SECRET).unwrap()),
    )
    .with_clock(FixedClock::at_unix(NOW))
}

fn counts(recorder: &DebuggingRecorder) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, ..)| k.key().name() == "sinew_signature_verifications_total")
        .map(|(k, _, _, v)| {
            let label = k
                .key()
                .labels()
                .find(|l| l.key() == "result")
                .map(|l| l.value().to_owned())
                .unwrap();
            let DebugValue::Counter(n) = v else {
                panic!("counter expected")
            };
            (label, n)
        })
        .collect();
    out.sort();
    out
}

#[test]
fn outcomes_are_counted_by_result() {
    let recorder = DebuggingRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let v = verifier(1);
        let first = signed();
        assert!(v.verify(&first, b"{}").is_ok());
        assert_eq!(v.verify(&first, b"{}").unwrap_err().reason(), "replayed");
        // The cache holds one live entry: a new signature is refused, 503.
        let r = v.verify(&signed(), b"{}").unwrap_err();
        assert_eq!(r.reason(), "replay_cache_full");
        assert_eq!(r.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            v.verify(&signed(), b"{ }").unwrap_err().reason(),
            "digest_mismatch"
        );
    });
    assert_eq!(
        counts(&recorder),
        vec![
            ("digest_mismatch".to_owned(), 1),
            ("ok".to_owned(), 1),
            ("replay_cache_full".to_owned(), 1),
            ("replayed".to_owned(), 1),
        ]
    );
}

#[test]
fn the_window_frees_the_replay_cache() {
    let clock = FixedClock::at_unix(NOW);
    let v = Verifier::new(
        VerifyConfig::default().replay_capacity(1),
        StaticKeyStore::new().with_key("orders", SecretKey::from_text(SECRET).unwrap()),
    )
    .with_clock(clock.clone());
    assert!(v.verify(&signed(), b"{}").is_ok());
    assert_eq!(
        v.verify(&signed(), b"{}").unwrap_err().reason(),
        "replay_cache_full"
    );
    // Past the max age (300 s) the old entry cannot be replayed anyway, so
    // it is dropped and a new signature fits.
    clock.advance(std::time::Duration::from_secs(302));
    assert!(v.verify(&signed_at(NOW + 302), b"{}").is_ok());
    assert_eq!(
        v.verify(&signed_at(NOW + 302), b"{}").unwrap_err().reason(),
        "replay_cache_full"
    );
}

#[test]
fn rejections_never_show_secrets_or_expected_values() {
    let v = verifier(10);
    let mut parts = signed();
    parts.uri = "http://inventory.internal/other".parse().unwrap();
    let r: Rejection = v.verify(&parts, b"{}").unwrap_err();
    assert_eq!(r.reason(), "bad_signature");
    let shown = format!(
        "{r} {r:?} {}",
        String::from_utf8_lossy(&r.to_problem().to_json())
    );
    let sig = parts.headers["signature"].to_str().unwrap();
    let mac = sig.split(':').nth(1).unwrap();
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(!shown.contains(mac), "{shown}");
    assert!(!shown.contains("sha-256=:"), "{shown}");
    assert!(shown.contains("bad_signature"), "{shown}");
    let problem: serde_json::Value = serde_json::from_slice(&r.to_problem().to_json()).unwrap();
    assert_eq!(problem["status"], 401);
    assert_eq!(problem["reason"], "bad_signature");

    let signer = Signer::new(
        SignConfig::rfc9421("orders"),
        SecretKey::from_text(SECRET).unwrap(),
    )
    .unwrap();
    assert!(!format!("{signer:?} {v:?}").contains(SECRET));
}

#[test]
fn signer_refuses_bad_configuration() {
    let key = || SecretKey::from_text("k").unwrap();
    assert!(Signer::new(SignConfig::rfc9421(""), key()).is_err());
    assert!(Signer::new(SignConfig::rfc9421("k").label("Not A Key"), key()).is_err());
    assert!(Signer::new(SignConfig::rfc9421("k\u{7f}"), key()).is_err());
    assert!(Signer::new(SignConfig::legacy("bad\nid"), key()).is_err());
}

#[test]
fn signing_twice_keeps_other_labels_and_replaces_its_own() {
    let key = SecretKey::from_text(SECRET).unwrap();
    let a = Signer::new(SignConfig::rfc9421("orders").label("a"), key.clone()).unwrap();
    let b = Signer::new(SignConfig::rfc9421("orders").label("b"), key).unwrap();
    let mut parts = http::Request::get("http://h/")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    a.sign(&mut parts, b"").unwrap();
    b.sign(&mut parts, b"").unwrap();
    a.sign(&mut parts, b"").unwrap();
    let input = parts.headers["signature-input"].to_str().unwrap();
    assert!(
        input.starts_with("b=(") && input.contains(", a=("),
        "{input}"
    );
    assert_eq!(input.matches("a=(").count(), 1, "{input}");
    let v = Verifier::new(
        VerifyConfig::default().label("a"),
        StaticKeyStore::new().with_key("orders", SecretKey::from_text(SECRET).unwrap()),
    );
    assert_eq!(v.verify(&parts, b"").unwrap().label.as_deref(), Some("a"));
}

#[test]
fn expires_absolute_or_relative() {
    let key = || SecretKey::from_text(SECRET).unwrap();
    let sign = |config: SignConfig| {
        let signer = Signer::new(config, key())
            .unwrap()
            .with_clock(FixedClock::at_unix(NOW));
        let mut parts = http::Request::get("http://h/")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        signer.sign(&mut parts, b"").unwrap();
        parts.headers["signature-input"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let rel = sign(SignConfig::rfc9421("orders").expires_in(std::time::Duration::from_secs(60)));
    assert!(
        rel.contains(&format!(";created={NOW};expires={};", NOW + 60)),
        "{rel}"
    );
    let abs = sign(
        SignConfig::rfc9421("orders")
            .expires_in(std::time::Duration::from_secs(60))
            .expires_at(NOW + 5),
    );
    assert!(abs.contains(&format!(";expires={};", NOW + 5)), "{abs}");
}
