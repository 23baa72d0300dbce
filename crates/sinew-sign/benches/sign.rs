//! Signing and verifying next to the raw crypto floor, measured in the same
//! run: HMAC-SHA256 of the signature base (keyed from the raw secret) plus
//! SHA-256 of the body. A sign+verify round does that crypto twice (the
//! signer and the verifier each hash the body and MAC the base), so it is
//! compared with `floor_x2`.
//!
//! `cargo bench -p sinew-sign --bench sign -- --warm-up-time 1 --measurement-time 3`
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use sinew_core::FixedClock;
use sinew_sign::{
    signature_base, MessageRef, SecretKey, SignConfig, Signer, StaticKeyStore, Verifier,
    VerifyConfig,
};

const NOW: u64 = 1_763_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn floor(secret: &[u8], base: &[u8], body: &[u8]) -> ([u8; 32], [u8; 32]) {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(base);
    let tag: [u8; 32] = mac.finalize().into_bytes().into();
    let digest: [u8; 32] = Sha256::digest(body).into();
    (tag, digest)
}

fn bench_case(c: &mut Criterion, name: &str, req: http::request::Parts, body: Vec<u8>) {
    let clock = FixedClock::at_unix(NOW);
    let key = SecretKey::from_bytes(SECRET).unwrap();
    let signer = Signer::new(SignConfig::rfc9421("orders"), key.clone())
        .unwrap()
        .with_clock(clock.clone());
    let keys = StaticKeyStore::new().with_key("orders", key);
    let verifier = Verifier::new(
        VerifyConfig::default().replay_protection(false),
        keys.clone(),
    )
    .with_clock(clock.clone());
    let replay_verifier = Verifier::new(VerifyConfig::default(), keys).with_clock(clock.clone());

    // The base the floor MACs: the real one of a signed request.
    let mut signed = req.clone();
    signer.sign(&mut signed, &body).unwrap();
    let input = signed.headers["signature-input"]
        .to_str()
        .unwrap()
        .to_owned();
    let list = sfv::Parser::new(&input).parse::<sfv::Dictionary>().unwrap();
    let sfv::ListEntry::InnerList(inner) = &list[0] else {
        panic!()
    };
    let params = sinew_sign::SignatureParams::from_inner_list(inner).unwrap();
    let base = signature_base(&MessageRef::request(&signed), &params).unwrap();

    let mut g = c.benchmark_group(name);
    g.throughput(criterion::Throughput::Elements(1));
    g.bench_function("floor", |b| {
        b.iter(|| {
            floor(
                black_box(SECRET),
                black_box(base.as_bytes()),
                black_box(&body),
            )
        })
    });
    g.bench_function("floor_x2", |b| {
        b.iter(|| {
            let a = floor(
                black_box(SECRET),
                black_box(base.as_bytes()),
                black_box(&body),
            );
            let v = floor(
                black_box(SECRET),
                black_box(base.as_bytes()),
                black_box(&body),
            );
            (a, v)
        })
    });
    // What sfv alone costs to parse the two signature fields into owned
    // dictionaries (what verification did before the visitor parse), and
    // to walk them with a visitor that keeps nothing (a lower bound of the
    // borrowing parse verification now does).
    let sig = signed.headers["signature"].as_bytes().to_vec();
    g.bench_function("sfv_visit_only", |b| {
        b.iter(|| {
            sfv::Parser::new(black_box(&input))
                .parse_dictionary_with_visitor(sfv::visitor::Ignored)
                .unwrap();
            sfv::Parser::new(black_box(&sig))
                .parse_dictionary_with_visitor(sfv::visitor::Ignored)
                .unwrap();
        })
    });
    g.bench_function("sfv_parse_only", |b| {
        b.iter(|| {
            let i = sfv::Parser::new(black_box(&input))
                .parse::<sfv::Dictionary>()
                .unwrap();
            let s = sfv::Parser::new(black_box(&sig))
                .parse::<sfv::Dictionary>()
                .unwrap();
            (i, s)
        })
    });
    g.bench_function("sign", |b| {
        b.iter_batched(
            || req.clone(),
            |mut p| {
                signer.sign(&mut p, black_box(&body)).unwrap();
                p
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("verify", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(&signed), black_box(&body))
                .unwrap()
        })
    });
    g.bench_function("sign_verify", |b| {
        b.iter_batched(
            || req.clone(),
            |mut p| {
                signer.sign(&mut p, black_box(&body)).unwrap();
                verifier.verify(&p, black_box(&body)).unwrap();
                p
            },
            BatchSize::SmallInput,
        )
    });
    // With the replay cache (the default capacity): every 50 000 calls the clock
    // moves past the window so expired entries are swept, as in a server.
    let mut n = 0u64;
    g.bench_function("sign_verify_replay_cache", |b| {
        b.iter_batched(
            || req.clone(),
            |mut p| {
                n += 1;
                if n.is_multiple_of(50_000) {
                    clock.advance(Duration::from_secs(301));
                }
                signer.sign(&mut p, black_box(&body)).unwrap();
                replay_verifier.verify(&p, black_box(&body)).unwrap();
                p
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    let get = http::Request::get("http://inventory.internal/items/42?expand=stock")
        .header("accept", "application/json")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    bench_case(c, "small_get", get, Vec::new());

    let post = http::Request::post("http://inventory.internal/items/bulk")
        .header("content-type", "application/octet-stream")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let body: Vec<u8> = (0..64 * 1024).map(|i| (i * 31 % 251) as u8).collect();
    bench_case(c, "post_64k", post, body);
}

criterion_group!(group, benches);
criterion_main!(group);
