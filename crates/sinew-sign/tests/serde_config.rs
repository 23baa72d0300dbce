//! Configuration read through serde (feature `serde`), durations as "30s".
#![cfg(feature = "serde")]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sinew_sign::{parse_components, Accept, Profile, SignConfig, VerifyConfig};

#[test]
fn sign_config_from_json() {
    let c: SignConfig = serde_json::from_str(
        r#"{"profile":"legacy","key_id":"orders","expires_in":"30s","components":["@method","@query-param;name=\"Pet\""]}"#,
    )
    .unwrap();
    assert_eq!(c.profile, Profile::Legacy);
    assert_eq!(c.key_id, "orders");
    assert_eq!(c.expires_in, Some(Duration::from_secs(30)));
    assert_eq!(
        c.components,
        parse_components("@method @query-param;name=\"Pet\"").unwrap()
    );
    // Defaults for the rest.
    assert_eq!(c.label, "sig1");
    assert!(c.nonce && c.alg);
    // Unknown keys and bad components are errors.
    assert!(serde_json::from_str::<SignConfig>(r#"{"key_idd":"x"}"#).is_err());
    assert!(serde_json::from_str::<SignConfig>(r#"{"components":["@nope"]}"#).is_err());
}

#[test]
fn verify_config_round_trips() {
    let c: VerifyConfig = serde_json::from_str(
        r#"{"accept":"any","max_age":"2m","skew":"5s","required_components":["@method","@path"]}"#,
    )
    .unwrap();
    assert_eq!(c.accept, Accept::Any);
    assert_eq!(c.max_age, Duration::from_secs(120));
    assert_eq!(c.skew, Duration::from_secs(5));
    assert_eq!(c.body_limit, 1024 * 1024);
    let back: VerifyConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
    assert!(serde_json::from_str::<VerifyConfig>(r#"{"max_age":"soon"}"#).is_err());
    // The limits on what a peer sends.
    let c: VerifyConfig = serde_json::from_str(
        r#"{"max_header_bytes":100,"max_signatures":2,"max_components":3,"max_component_params":4,"max_signature_params":5,"max_covered_bytes":6}"#,
    )
    .unwrap();
    assert_eq!(
        c,
        VerifyConfig::default()
            .max_header_bytes(100)
            .max_signatures(2)
            .max_components(3)
            .max_component_params(4)
            .max_signature_params(5)
            .max_covered_bytes(6)
    );
    assert!(serde_json::from_str::<VerifyConfig>(r#"{"max_components":-1}"#).is_err());
}
