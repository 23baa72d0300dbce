//! Paired rounds: sign+verify and the crypto floor interleaved round by
//! round (robust on a loaded machine), medians per call.
//!
//! `cargo bench -p sinew-sign --bench paired`
//!
//! With `SINEW_BENCH_ONLY=floor|sign_verify` and `SINEW_BENCH_CASE=get|post`
//! it runs that variant only (`SINEW_BENCH_ITERS` times, default 2000),
//! e.g. under `valgrind --tool=callgrind` for instruction counts or
//! `perf record`.
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Instant;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use sinew_core::FixedClock;
use sinew_sign::{
    signature_base, MessageRef, SecretKey, SignConfig, SignatureParams, Signer, StaticKeyStore,
    Verifier, VerifyConfig,
};

const NOW: u64 = 1_763_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

struct Case {
    name: &'static str,
    req: http::request::Parts,
    body: Vec<u8>,
    base: String,
    signer: Signer,
    verifier: Verifier,
}

fn case(name: &'static str, req: http::request::Parts, body: Vec<u8>) -> Case {
    let key = SecretKey::from_bytes(SECRET).unwrap();
    let clock = FixedClock::at_unix(NOW);
    let signer = Signer::new(SignConfig::rfc9421("orders"), key.clone())
        .unwrap()
        .with_clock(clock.clone());
    let verifier = Verifier::new(
        VerifyConfig::default().replay_protection(false),
        StaticKeyStore::new().with_key("orders", key),
    )
    .with_clock(clock);
    let mut signed = req.clone();
    signer.sign(&mut signed, &body).unwrap();
    let input = signed.headers["signature-input"]
        .to_str()
        .unwrap()
        .to_owned();
    let dict = sfv::Parser::new(&input).parse::<sfv::Dictionary>().unwrap();
    let sfv::ListEntry::InnerList(inner) = &dict[0] else {
        panic!()
    };
    let params = SignatureParams::from_inner_list(inner).unwrap();
    let base = signature_base(&MessageRef::request(&signed), &params).unwrap();
    Case {
        name,
        req,
        body,
        base,
        signer,
        verifier,
    }
}

/// The crypto a sign+verify round cannot avoid, done twice (signer and
/// verifier): HMAC-SHA256 of the base keyed from the raw secret, SHA-256 of
/// the body.
fn floor_x2(c: &Case) {
    for _ in 0..2 {
        let mut mac = Hmac::<Sha256>::new_from_slice(black_box(SECRET)).unwrap();
        mac.update(black_box(c.base.as_bytes()));
        black_box(mac.finalize().into_bytes());
        black_box(Sha256::digest(black_box(&c.body)));
    }
}

fn sign_verify(c: &Case, parts: &mut http::request::Parts) {
    c.signer.sign(parts, black_box(&c.body)).unwrap();
    black_box(c.verifier.verify(parts, black_box(&c.body)).unwrap());
}

fn time<F: FnMut()>(n: usize, mut f: F) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let get = http::Request::get("http://inventory.internal/items/42?expand=stock")
        .header("accept", "application/json")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let post = http::Request::post("http://inventory.internal/items/bulk")
        .header("content-type", "application/octet-stream")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let big: Vec<u8> = (0..64 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    let cases = [
        case("small GET", get, Vec::new()),
        case("64 KiB POST", post, big),
    ];

    let only = std::env::var("SINEW_BENCH_ONLY").ok();
    if let Some(only) = only {
        let which = std::env::var("SINEW_BENCH_CASE").unwrap_or_else(|_| "get".into());
        let c = &cases[usize::from(which == "post")];
        let iters = std::env::var("SINEW_BENCH_ITERS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(2_000);
        for _ in 0..iters {
            let mut parts = c.req.clone();
            match only.as_str() {
                "floor" => floor_x2(c),
                _ => sign_verify(c, &mut parts),
            }
        }
        return;
    }

    for c in &cases {
        let (rounds, per) = if c.body.is_empty() {
            (300, 400)
        } else {
            (60, 20)
        };
        let mut floor = Vec::new();
        let mut ours = Vec::new();
        let mut clone_only = Vec::new();
        for _ in 0..rounds {
            floor.push(time(per, || floor_x2(c)));
            clone_only.push(time(per, || {
                black_box(c.req.clone());
            }));
            ours.push(time(per, || {
                let mut parts = c.req.clone();
                sign_verify(c, &mut parts);
            }));
        }
        let f = median(&mut floor);
        let o = median(&mut ours) - median(&mut clone_only);
        println!(
            "{}: floor (2 x HMAC of the base + SHA-256 of the body) {:.0} ns, sign+verify {:.0} ns, ratio {:.2}x",
            c.name,
            f,
            o,
            o / f
        );
    }
}
