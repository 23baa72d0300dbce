//! RFC 9421 Appendix B.2 test vectors, byte-exact.
#![allow(clippy::unwrap_used)]

use sinew_core::FixedClock;
use sinew_sign::{
    parse_components, signature_base, MessageRef, SecretKey, SignConfig, SignatureParams, Signer,
    StaticKeyStore, Verifier, VerifyConfig,
};

const CREATED: i64 = 1618884473;
const SHARED_SECRET: &str =
    "uzvJfB4u3N0Jy4T7NZ75MDVcr8zSTInedJtkgcu46YW4XByzNJjxBdtjUkdJPBtbmHhIDi6pcl8jsasjlTMtDQ==";
const REQ_DIGEST: &str = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";
const BODY: &[u8] = br#"{"hello": "world"}"#;

/// The test request of RFC 9421 Appendix B.2, as a server receives it.
fn test_request() -> http::request::Parts {
    http::Request::post("/foo?param=Value&Pet=dog")
        .header("host", "example.com")
        .header("date", "Tue, 20 Apr 2021 02:07:55 GMT")
        .header("content-type", "application/json")
        .header("content-digest", REQ_DIGEST)
        .header("content-length", "18")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn base(components: &str, params: impl FnOnce(SignatureParams) -> SignatureParams) -> String {
    let parts = test_request();
    let p = params(SignatureParams::new(parse_components(components).unwrap()));
    signature_base(&MessageRef::request(&parts), &p).unwrap()
}

#[test]
fn b21_minimal_signature_base() {
    let got = base("", |p| {
        p.created(CREATED)
            .keyid("test-key-rsa-pss")
            .nonce("b3k2pp5k7z-50gnwp.yemd")
    });
    assert_eq!(
        got,
        r#""@signature-params": ();created=1618884473;keyid="test-key-rsa-pss";nonce="b3k2pp5k7z-50gnwp.yemd""#
    );
}

#[test]
fn b22_selective_components_base() {
    let got = base(
        r#"@authority content-digest @query-param;name="Pet""#,
        |p| {
            p.created(CREATED)
                .keyid("test-key-rsa-pss")
                .tag("header-example")
        },
    );
    let expected = [
        r#""@authority": example.com"#.to_owned(),
        format!(r#""content-digest": {REQ_DIGEST}"#),
        r#""@query-param";name="Pet": dog"#.to_owned(),
        r#""@signature-params": ("@authority" "content-digest" "@query-param";name="Pet");created=1618884473;keyid="test-key-rsa-pss";tag="header-example""#.to_owned(),
    ]
    .join("\n");
    assert_eq!(got, expected);
}

#[test]
fn b23_full_coverage_base() {
    let got = base(
        "date @method @path @query @authority content-type content-digest content-length",
        |p| p.created(CREATED).keyid("test-key-rsa-pss"),
    );
    let expected = [
        r#""date": Tue, 20 Apr 2021 02:07:55 GMT"#.to_owned(),
        r#""@method": POST"#.to_owned(),
        r#""@path": /foo"#.to_owned(),
        r#""@query": ?param=Value&Pet=dog"#.to_owned(),
        r#""@authority": example.com"#.to_owned(),
        r#""content-type": application/json"#.to_owned(),
        format!(r#""content-digest": {REQ_DIGEST}"#),
        r#""content-length": 18"#.to_owned(),
        r#""@signature-params": ("date" "@method" "@path" "@query" "@authority" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-rsa-pss""#.to_owned(),
    ]
    .join("\n");
    assert_eq!(got, expected);
}

#[test]
fn b24_response_base() {
    let digest = "sha-512=:mEWXIS7MaLRuGgxOBdODa3xqM1XdEvxoYhvlCFJ41QJgJc4GTsPp29l5oGX69wWdXymyU0rjJuahq4l5aGgfLQ==:";
    let (parts, ()) = http::Response::builder()
        .status(200)
        .header("date", "Tue, 20 Apr 2021 02:07:56 GMT")
        .header("content-type", "application/json")
        .header("content-digest", digest)
        .header("content-length", "23")
        .body(())
        .unwrap()
        .into_parts();
    let params = SignatureParams::new(
        parse_components("@status content-type content-digest content-length").unwrap(),
    )
    .created(CREATED)
    .keyid("test-key-ecc-p256");
    let got = signature_base(&MessageRef::response(&parts), &params).unwrap();
    let expected = [
        r#""@status": 200"#.to_owned(),
        r#""content-type": application/json"#.to_owned(),
        format!(r#""content-digest": {digest}"#),
        r#""content-length": 23"#.to_owned(),
        r#""@signature-params": ("@status" "content-type" "content-digest" "content-length");created=1618884473;keyid="test-key-ecc-p256""#.to_owned(),
    ]
    .join("\n");
    assert_eq!(got, expected);
}

#[test]
fn b25_hmac_base_and_signature() {
    let got = base("date @authority content-type", |p| {
        p.created(CREATED).keyid("test-shared-secret")
    });
    assert_eq!(
        got,
        "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@authority\": example.com\n\"content-type\": application/json\n\"@signature-params\": (\"date\" \"@authority\" \"content-type\");created=1618884473;keyid=\"test-shared-secret\""
    );

    let config = SignConfig::rfc9421("test-shared-secret")
        .components(parse_components("date @authority content-type").unwrap())
        .label("sig-b25")
        .nonce(false)
        .alg(false);
    let signer = Signer::new(config, SecretKey::from_base64(SHARED_SECRET).unwrap())
        .unwrap()
        .with_clock(FixedClock::at_unix(CREATED as u64));
    let mut parts = test_request();
    signer.sign(&mut parts, BODY).unwrap();
    assert_eq!(
        parts.headers["signature-input"],
        r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#
    );
    assert_eq!(
        parts.headers["signature"],
        "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:"
    );
    // content-digest is not covered: the request's own digest is untouched.
    assert_eq!(parts.headers["content-digest"], REQ_DIGEST);
}

#[test]
fn b25_verifies_as_published() {
    let mut parts = test_request();
    parts.headers.insert(
        "signature-input",
        r#"sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret""#
            .parse()
            .unwrap(),
    );
    parts.headers.insert(
        "signature",
        "sig-b25=:pxcQw6G3AjtMBQjwo8XzkZf/bws5LelbaMk5rGIGtE8=:"
            .parse()
            .unwrap(),
    );
    let keys = StaticKeyStore::new().with_key(
        "test-shared-secret",
        SecretKey::from_base64(SHARED_SECRET).unwrap(),
    );
    let verifier = Verifier::new(
        VerifyConfig::default().required_components(parse_components("@authority").unwrap()),
        keys,
    )
    .with_clock(FixedClock::at_unix(CREATED as u64 + 10));
    let caller = verifier.verify(&parts, BODY).unwrap();
    assert_eq!(caller.key_id, "test-shared-secret");
    assert_eq!(caller.label.as_deref(), Some("sig-b25"));
    // The request's sha-512 Content-Digest is checked against the body.
    let err = verifier
        .verify(&parts, b"{\"hello\": \"there\"}")
        .unwrap_err();
    assert_eq!(err.reason(), "digest_mismatch");
}

#[test]
fn b26_ed25519_base() {
    let got = base(
        "date @method @path @authority content-type content-length",
        |p| p.created(CREATED).keyid("test-key-ed25519"),
    );
    let expected = [
        r#""date": Tue, 20 Apr 2021 02:07:55 GMT"#,
        r#""@method": POST"#,
        r#""@path": /foo"#,
        r#""@authority": example.com"#,
        r#""content-type": application/json"#,
        r#""content-length": 18"#,
        r#""@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#,
    ]
    .join("\n");
    assert_eq!(got, expected);
}

#[test]
fn rfc9530_known_digests() {
    assert_eq!(
        sinew_sign::content_digest(BODY),
        "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    );
    assert_eq!(
        sinew_sign::content_digest(b""),
        "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
    );
}
