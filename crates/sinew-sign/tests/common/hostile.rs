//! Hostile signature headers within the default limits of `VerifyConfig`
//! (shared by `tests/limits.rs` and `benches/hostile.rs`). Each names the
//! known key id `k1` with a fresh `created`, so it gets past the cheap
//! checks to the most work the verifier does before the MAC fails.
#![allow(dead_code)]

use sinew_sign::{SecretKey, SignConfig, Signer, StaticKeyStore, Verifier, VerifyConfig};

pub(crate) const NOW: u64 = 1_763_000_000;
pub(crate) const SECRET: &str = "s3cret";

pub(crate) fn verifier(config: VerifyConfig) -> Verifier {
    Verifier::new(
        config.replay_protection(false),
        StaticKeyStore::new().with_key("k1", SecretKey::from_text(SECRET).expect("key")),
    )
    .with_clock(sinew_core::FixedClock::at_unix(NOW))
}

/// A normal signed GET (the default components).
pub(crate) fn normal() -> http::request::Parts {
    let signer = Signer::new(
        SignConfig::rfc9421("k1"),
        SecretKey::from_text(SECRET).expect("key"),
    )
    .expect("signer")
    .with_clock(sinew_core::FixedClock::at_unix(NOW));
    let mut parts = http::Request::get("http://inventory.internal/items?page=2")
        .body(())
        .expect("request")
        .into_parts()
        .0;
    signer.sign(&mut parts, b"").expect("sign");
    parts
}

fn request(
    input: &str,
    signature: &str,
    headers: impl IntoIterator<Item = (String, String)>,
) -> http::request::Parts {
    let mut b = http::Request::get("http://inventory.internal/items?page=2")
        .header("signature-input", input)
        .header("signature", signature);
    for (k, v) in headers {
        b = b.header(k, v);
    }
    b.body(()).expect("request").into_parts().0
}

/// The default components, which every signature must cover.
const REQUIRED: &str = r#""@method" "@authority" "@path" "@query" "content-digest""#;
const DIGEST: &str = "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:";
/// A signature that is canonical in form but wrong.
const BAD_MAC: &str = "sig1=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:";

/// The request `build(n)` for the largest `n` up to `max` that the default
/// limits let through to the MAC check.
fn largest(max: usize, build: impl Fn(usize) -> http::request::Parts) -> http::request::Parts {
    let v = verifier(VerifyConfig::default());
    let fits = |n: usize| {
        v.verify(&build(n), b"")
            .err()
            .is_none_or(|r| r.reason() != "limit_exceeded")
    };
    let (mut lo, mut hi) = (1, max);
    if !fits(lo) {
        panic!(
            "even the smallest shape is over a limit: {:?}",
            v.verify(&build(lo), b"")
        );
    }
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(mid) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    build(lo)
}

/// Pad `text` with an extension parameter to `bytes` long.
fn pad(mut text: String, bytes: usize) -> String {
    let room = bytes.saturating_sub(text.len() + ";pad=\"\"".len());
    text.push_str(&format!(";pad=\"{}\"", "p".repeat(room)));
    text
}

/// The hostile shapes, by name: `(name, request)`. Each stays within the
/// default limits (8 KiB fields, 16 signatures, 64 components, 8
/// parameters per component, 32 per signature, 16 KiB read by the
/// components).
pub(crate) fn shapes() -> Vec<(&'static str, http::request::Parts)> {
    let fresh = format!("created={NOW};keyid=\"k1\"");
    let mut out = Vec::new();

    // 59 long field names (plus the 5 required), each present with the
    // longest value the limits allow: the most header lookups, base and
    // MAC they allow.
    let names: Vec<String> = (0..59)
        .map(|i| format!("x-{i:02}-{}", "n".repeat(100)))
        .collect();
    let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    let input = pad(
        format!("sig1=({REQUIRED} {});{fresh}", list.join(" ")),
        8000,
    );
    out.push((
        "64 long fields",
        largest(4096, |len| {
            let headers = names
                .iter()
                .map(|n| (n.clone(), "v".repeat(len)))
                .chain([("content-digest".to_owned(), DIGEST.to_owned())]);
            request(&input, BAD_MAC, headers)
        }),
    ));

    // One dictionary field read by many components with `;key` (each
    // parses the whole field), as many as the limits allow.
    let dict: Vec<String> = (0..24).map(|i| format!("k{i}=\"d\"")).collect();
    let dict = dict.join(", ");
    out.push((
        "structured re-reads",
        largest(59, |n| {
            let list: Vec<String> = (0..n)
                .map(|i| match i / 24 {
                    0 => format!("\"x-dict\";key=\"k{}\"", i % 24),
                    1 => format!("\"x-dict\";key=\"k{}\";sf", i % 24),
                    _ => format!("\"x-dict\";sf;key=\"k{}\"", i % 24),
                })
                .collect();
            let input = pad(
                format!("sig1=({REQUIRED} {});{fresh}", list.join(" ")),
                8000,
            );
            let headers = [
                ("x-dict".to_owned(), dict.clone()),
                ("content-digest".to_owned(), DIGEST.to_owned()),
            ];
            request(&input, BAD_MAC, headers)
        }),
    ));

    // `@query-param` components over a query of as many parameters (each
    // scans the whole query), as many as the limits allow.
    out.push((
        "query parameters",
        largest(59, |n| {
            let query: Vec<String> = (0..n).map(|i| format!("q{i}=%41{i}+x")).collect();
            let list: Vec<String> = (0..n)
                .map(|i| format!("\"@query-param\";name=\"q{i}\""))
                .collect();
            let input = format!("sig1=({REQUIRED} {});{fresh}", list.join(" "));
            let mut parts = request(
                &pad(input, 8000),
                BAD_MAC,
                [("content-digest".to_owned(), DIGEST.to_owned())],
            );
            parts.uri = format!("http://inventory.internal/items?{}", query.join("&"))
                .parse()
                .expect("uri");
            parts
        }),
    ));

    // 8 parameters on each of 64 components (duplicates, merged).
    let list: Vec<String> = (0..59)
        .map(|i| format!("\"x-{i}\"{}", ";bs".repeat(8)))
        .collect();
    let input = format!("sig1=({REQUIRED} {});{fresh}", list.join(" "));
    let headers = (0..59)
        .map(|i| (format!("x-{i}"), "v".repeat(64)))
        .chain([("content-digest".to_owned(), DIGEST.to_owned())]);
    out.push((
        "component parameters",
        request(&pad(input, 8000), BAD_MAC, headers),
    ));

    // 32 signature parameters, long strings full of escapes.
    let params: Vec<String> = (0..29)
        .map(|i| format!(";e{i}=\"{}\"", "\\\"".repeat(130)))
        .collect();
    let input = format!("sig1=({REQUIRED});{fresh}{}", params.concat());
    let headers = [("content-digest".to_owned(), DIGEST.to_owned())];
    out.push(("signature parameters", request(&input, BAD_MAC, headers)));

    // 16 signatures in both fields, the checked one last in `Signature`,
    // in a form the fast path does not take.
    let other = format!("({REQUIRED});{fresh};x=\"{}\"", "o".repeat(400));
    let mut inputs = vec![format!("sig1=({REQUIRED});{fresh}")];
    inputs.extend((1..16).map(|i| format!("s{i}={other}")));
    let mut sigs: Vec<String> = (1..16)
        .map(|i| format!("s{i}=:{}:", "A".repeat(450)))
        .collect();
    sigs.push("sig1=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:;p".to_owned());
    let headers = [("content-digest".to_owned(), DIGEST.to_owned())];
    out.push((
        "16 signatures",
        request(&inputs.join(", "), &sigs.join(", "), headers),
    ));

    // The issue's reproducer, cut to the field limit: short components.
    let list: Vec<String> = (1..2000).map(|k| format!("\"{k:x}\"")).collect();
    let input: String = format!("sig1=({});{fresh}", list.join(" "));
    let cut = input[..8000].rfind(' ').expect("space");
    let input = format!("{});{fresh}", &input[..cut]);
    out.push(("short components", request(&input, "sig1=:AAAA:", [])));

    out
}

/// The issue's unsigned reproducers: `n` short components, `n` parameters
/// on one component, `n` signature parameters.
pub(crate) fn issue_shapes(n: usize) -> Vec<(&'static str, http::request::Parts)> {
    let fresh = format!("created={NOW};keyid=\"k1\"");
    let comps: Vec<String> = (1..=n).map(|k| format!("\"{k:x}\"")).collect();
    let params: Vec<String> = (1..=n).map(|k| format!("p{k:x}")).collect();
    vec![
        (
            "components",
            request(
                &format!("sig1=({});{fresh}", comps.join(" ")),
                "sig1=:AAAA:",
                [],
            ),
        ),
        (
            "component parameters",
            request(
                &format!("sig1=(\"@method\";{});{fresh}", params.join(";")),
                "sig1=:AAAA:",
                [],
            ),
        ),
        (
            "signature parameters",
            request(
                &format!("sig1=(\"@method\");{};{fresh}", params.join(";")),
                "sig1=:AAAA:",
                [],
            ),
        ),
    ]
}

/// No limits at all.
pub(crate) fn unlimited() -> VerifyConfig {
    VerifyConfig::default()
        .max_header_bytes(usize::MAX)
        .max_signatures(usize::MAX)
        .max_components(usize::MAX)
        .max_component_params(usize::MAX)
        .max_signature_params(usize::MAX)
        .max_covered_bytes(usize::MAX)
}

/// This thread's CPU time.
pub(crate) fn cpu() -> std::time::Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    std::time::Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// The least CPU time per call of `f` over `runs` runs of `n` calls.
pub(crate) fn cost(runs: usize, n: u32, mut f: impl FnMut()) -> std::time::Duration {
    (0..runs)
        .map(|_| {
            let start = cpu();
            for _ in 0..n {
                f();
            }
            (cpu() - start) / n
        })
        .min()
        .unwrap_or_default()
}
