//! Property tests: every signed request verifies, any change to a covered
//! part fails, and no input to the parsers panics.
#![allow(clippy::unwrap_used)]

use http::{HeaderValue, Method, Request};
use proptest::prelude::*;
use sinew_core::FixedClock;
use sinew_sign::{
    parse_components, signature_base, Accept, Component, MessageRef, SecretKey, SignConfig,
    SignatureParams, Signer, StaticKeyStore, Verifier, VerifyConfig,
};

const NOW: u64 = 1_763_000_000;

fn store() -> StaticKeyStore {
    StaticKeyStore::new()
        .with_key("k1", SecretKey::from_text("secret-one").unwrap())
        .with_key("k2", SecretKey::from_text("secret-two").unwrap())
        .with_legacy_key("svc", SecretKey::from_text("legacy").unwrap())
}

fn verifier() -> Verifier {
    Verifier::new(
        VerifyConfig::default()
            .accept(Accept::Any)
            .required_components(vec![]),
        store(),
    )
    .with_clock(FixedClock::at_unix(NOW))
}

#[derive(Debug, Clone)]
struct Case {
    method: Method,
    host: String,
    path: String,
    query: Option<String>,
    tenant: String,
    body: Vec<u8>,
    components: Vec<&'static str>,
    nonce: bool,
    alg: bool,
    origin_form: bool,
}

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._~-]{1,8}"
}

fn case() -> impl Strategy<Value = Case> {
    let methods = prop::sample::select(vec![
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
    ]);
    let components = prop::sample::subsequence(
        vec![
            "@method",
            "@authority",
            "@path",
            "@query",
            "@target-uri",
            "@request-target",
            "@scheme",
            "content-digest",
            "x-tenant",
            "@query-param;name=\"q\"",
        ],
        0..=10,
    );
    (
        methods,
        "[a-z]{1,10}(\\.[a-z]{2,5})?(:[1-9][0-9]{1,4})?",
        prop::collection::vec(token(), 0..4),
        prop::option::of(prop::collection::vec((token(), token()), 0..4)),
        "[ -~]{0,20}",
        prop::collection::vec(any::<u8>(), 0..200),
        components,
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(method, host, segs, query, tenant, body, components, nonce, alg, origin_form)| {
                let path = format!("/{}", segs.join("/"));
                // `q` always occurs exactly once so @query-param;name="q" exists.
                let query = query.map(|pairs| {
                    let mut q = String::from("q=v");
                    for (k, v) in pairs {
                        if k != "q" {
                            q.push_str(&format!("&{k}={v}"));
                        }
                    }
                    q
                });
                Case {
                    method,
                    host,
                    path,
                    query,
                    tenant: tenant.trim().to_owned(),
                    body,
                    components,
                    nonce,
                    alg,
                    origin_form,
                }
            },
        )
}

fn parts_of(c: &Case) -> http::request::Parts {
    let pq = match &c.query {
        Some(q) => format!("{}?{q}", c.path),
        None => c.path.clone(),
    };
    let uri = if c.origin_form {
        pq
    } else {
        format!("http://{}{pq}", c.host)
    };
    let mut b = Request::builder().method(c.method.clone()).uri(uri);
    if c.origin_form {
        b = b.header("host", c.host.as_str());
    }
    b.header("x-tenant", c.tenant.as_str())
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn components_of(c: &Case) -> Vec<Component> {
    c.components
        .iter()
        .filter(|s| c.query.is_some() || !s.starts_with("@query-param"))
        .map(|s| Component::parse(s).unwrap())
        .collect()
}

fn sign(c: &Case, key_id: &str, secret: &str) -> http::request::Parts {
    let config = SignConfig::rfc9421(key_id)
        .components(components_of(c))
        .nonce(c.nonce)
        .alg(c.alg);
    let signer = Signer::new(config, SecretKey::from_text(secret).unwrap())
        .unwrap()
        .with_clock(FixedClock::at_unix(NOW));
    let mut parts = parts_of(c);
    signer.sign(&mut parts, &c.body).unwrap();
    parts
}

#[derive(Debug, Clone, Copy)]
enum Change {
    Method,
    Authority,
    Path,
    Query,
    Tenant,
    Body,
    Created,
    KeyId,
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_signed_request_verifies(c in case()) {
        let parts = sign(&c, "k1", "secret-one");
        let caller = verifier().verify(&parts, &c.body);
        prop_assert!(caller.is_ok(), "{:?}", caller);
        prop_assert_eq!(caller.unwrap().key_id, "k1");
    }

    #[test]
    fn legacy_signed_requests_verify(c in case()) {
        let signer = Signer::new(SignConfig::legacy("svc"), SecretKey::from_text("legacy").unwrap())
            .unwrap()
            .with_clock(FixedClock::at_unix(NOW));
        let mut parts = parts_of(&c);
        signer.sign(&mut parts, &c.body).unwrap();
        prop_assert!(verifier().verify(&parts, &c.body).is_ok());
        // The path is covered.
        parts.uri = format!("{}x", parts.uri.path()).parse().unwrap();
        prop_assert_eq!(verifier().verify(&parts, &c.body).unwrap_err().reason(), "bad_signature");
    }

    #[test]
    fn any_change_to_a_covered_part_fails(
        c in case(),
        change in prop::sample::select(vec![
            Change::Method, Change::Authority, Change::Path, Change::Query,
            Change::Tenant, Change::Body, Change::Created, Change::KeyId,
        ]),
    ) {
        let covered = |name: &str| c.components.contains(&name);
        let whole_uri = covered("@target-uri");
        let target = covered("@request-target");
        let applies = match change {
            Change::Method => covered("@method"),
            Change::Authority => covered("@authority") || whole_uri,
            Change::Path => covered("@path") || whole_uri || target,
            Change::Query => (covered("@query") || whole_uri || target) || (c.query.is_some() && covered("@query-param;name=\"q\"")),
            Change::Tenant => covered("x-tenant"),
            Change::Body => covered("content-digest"),
            Change::Created | Change::KeyId => true,
        };
        prop_assume!(applies);
        let mut parts = sign(&c, "k1", "secret-one");
        let mut body = c.body.clone();
        match change {
            Change::Method => {
                parts.method = if parts.method == Method::GET { Method::HEAD } else { Method::GET };
            }
            Change::Authority => {
                let other = format!("{}x.example", c.host.split(':').next().unwrap());
                if c.origin_form {
                    parts.headers.insert("host", HeaderValue::from_str(&other).unwrap());
                } else {
                    let pq = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
                    parts.uri = format!("http://{other}{pq}").parse().unwrap();
                }
            }
            Change::Path => {
                let mut uri = parts.uri.to_string();
                let at = uri.find('?').unwrap_or(uri.len());
                uri.insert_str(at, "/z");
                parts.uri = uri.parse().unwrap();
            }
            Change::Query => {
                let uri = parts.uri.to_string().replacen("q=v", "q=w", 1);
                let uri = if uri.contains('?') { uri } else { format!("{uri}?z") };
                parts.uri = uri.parse().unwrap();
            }
            Change::Tenant => {
                let v = format!("{}!", c.tenant);
                parts.headers.insert("x-tenant", HeaderValue::from_str(&v).unwrap());
            }
            Change::Body => body.push(b'!'),
            Change::Created => {
                let input = parts.headers["signature-input"].to_str().unwrap().to_owned();
                let changed = input.replacen(&format!("created={NOW}"), &format!("created={}", NOW - 1), 1);
                parts.headers.insert("signature-input", HeaderValue::from_str(&changed).unwrap());
            }
            Change::KeyId => {
                let input = parts.headers["signature-input"].to_str().unwrap().to_owned();
                let changed = input.replacen("keyid=\"k1\"", "keyid=\"k2\"", 1);
                parts.headers.insert("signature-input", HeaderValue::from_str(&changed).unwrap());
            }
        }
        let result = verifier().verify(&parts, &body);
        prop_assert!(result.is_err(), "{:?} accepted after {:?}", c, change);
    }

    #[test]
    fn verifier_never_panics_on_arbitrary_headers(
        input in prop::collection::vec(any::<u8>(), 0..120),
        sig in prop::collection::vec(any::<u8>(), 0..80),
        digest in prop::collection::vec(any::<u8>(), 0..80),
        host in prop::collection::vec(any::<u8>(), 0..30),
        ts in prop::collection::vec(any::<u8>(), 0..24),
        xsig in prop::collection::vec(any::<u8>(), 0..80),
        body in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut parts = Request::get("/p?a=1").body(()).unwrap().into_parts().0;
        for (name, value) in [
            ("signature-input", input), ("signature", sig), ("content-digest", digest),
            ("host", host), ("x-timestamp", ts), ("x-signature", xsig),
        ] {
            if let Ok(v) = HeaderValue::from_bytes(&value) {
                parts.headers.insert(name, v);
            }
        }
        parts.headers.insert("x-service-id", HeaderValue::from_static("svc"));
        let _ = verifier().verify(&parts, &body);
    }

    #[test]
    fn verifier_never_panics_on_near_valid_input(
        comps in "[ -~]{0,60}",
        params in "[ -~]{0,60}",
    ) {
        let mut parts = Request::get("/p?a=1").header("host", "h").body(()).unwrap().into_parts().0;
        if let Ok(v) = HeaderValue::from_str(&format!("sig1=({comps});{params}")) {
            parts.headers.insert("signature-input", v);
            parts.headers.insert("signature", HeaderValue::from_static("sig1=:AAAA:"));
            let _ = verifier().verify(&parts, b"");
        }
    }

    #[test]
    fn component_parsers_never_panic(text in "\\PC{0,40}", item in "[ -~]{0,40}") {
        let _ = parse_components(&text);
        let _ = parse_components(&item);
        if let Ok(c) = Component::parse(&item) {
            // What parses serialises and parses back to the same thing.
            prop_assert_eq!(Component::parse(&c.to_string()).unwrap(), c);
        }
    }

    #[test]
    fn signature_base_never_panics(value in prop::collection::vec(any::<u8>(), 0..60), comps in "[ -~]{0,40}") {
        let mut parts = Request::get("/p?a=1&b").body(()).unwrap().into_parts().0;
        if let Ok(v) = HeaderValue::from_bytes(&value) {
            parts.headers.insert("x-any", v.clone());
            parts.headers.insert("host", v);
        }
        for list in ["x-any x-any;sf x-any;bs x-any;key=\"a\" @authority @target-uri", comps.as_str()] {
            if let Ok(components) = parse_components(list) {
                for c in components {
                    let params = SignatureParams::new(vec![c]).created(1);
                    let _ = signature_base(&MessageRef::request(&parts), &params);
                }
            }
        }
    }
}
