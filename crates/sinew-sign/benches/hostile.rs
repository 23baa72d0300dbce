//! The CPU cost of hostile `Signature-Input`/`Signature` headers against
//! a normal verify (thread CPU time, least of several runs: robust on a
//! loaded machine).
//!
//! `cargo bench -p sinew-sign --bench hostile`
#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

#[path = "../tests/common/hostile.rs"]
mod hostile;

use hostile::*;
use sinew_sign::VerifyConfig;

fn main() {
    let v = verifier(VerifyConfig::default());
    let normal = normal();
    let base = cost(9, 2000, || {
        black_box(v.verify(black_box(&normal), b"").unwrap());
    });
    println!("normal signed GET verify: {base:?}");
    println!("\nhostile shapes within the default limits:");
    for (name, parts) in shapes() {
        let mut reason = "";
        let t = cost(9, 200, || {
            reason = v.verify(black_box(&parts), b"").unwrap_err().reason();
        });
        println!(
            "  {name:<24} {t:>10.2?} = {:>5.1}x normal ({reason})",
            t.as_secs_f64() / base.as_secs_f64()
        );
    }
    let unlimited = verifier(unlimited());
    for n in [45_000, 90_000] {
        println!("\nthe issue's unsigned headers, n = {n}:");
        for (name, parts) in issue_shapes(n) {
            let bytes = parts.headers["signature-input"].len();
            for (config, v) in [("defaults", &v), ("no limits", &unlimited)] {
                let mut reason = "";
                let t = cost(3, 1, || {
                    reason = v.verify(black_box(&parts), b"").unwrap_err().reason();
                });
                println!("  {name:<22} {bytes:>7} B {config:<9} {t:>10.2?} ({reason})");
            }
        }
    }
}
