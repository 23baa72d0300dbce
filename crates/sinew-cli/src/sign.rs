//! `sinew sign` and `sinew verify`: raw HTTP requests on stdin.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use sinew_core::config::Secret;
use sinew_core::FixedClock;
use sinew_sign::{
    parse_components, Accept, SecretKey, SignConfig, Signer, StaticKeyStore, Verifier, VerifyConfig,
};

use crate::raw::RawRequest;

const EXIT_INVALID: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// The signing profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProfileArg {
    /// RFC 9421 HTTP Message Signatures, hmac-sha256.
    Rfc9421,
    /// microservice_comms' X-Service-ID / X-Timestamp / X-Signature.
    Legacy,
}

/// Where the key comes from: exactly one of these. A file or an
/// environment variable keeps it out of the command line, which every user
/// of the machine can read (`ps`, `/proc/PID/cmdline`).
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("key")
        .required(true)
        .args(["key_file", "key_env", "key_b64", "key_text"])
))]
pub(crate) struct KeyArgs {
    /// Read the secret from this file: its bytes, one final newline dropped,
    /// at most 64 KiB.
    #[arg(long = "key-file", value_name = "PATH")]
    key_file: Option<PathBuf>,
    /// Read the secret from this environment variable (its bytes).
    #[arg(long = "key-env", value_name = "VAR")]
    key_env: Option<String>,
    /// The secret, base64-encoded, on the command line. Other users see it
    /// in `ps`: for quick tries; use --key-file or --key-env otherwise.
    #[arg(long = "key-b64", value_name = "BASE64")]
    key_b64: Option<String>,
    /// The secret as text (its UTF-8 bytes) on the command line. Other
    /// users see it in `ps`: for quick tries; use --key-file or --key-env
    /// otherwise.
    #[arg(long = "key-text", value_name = "TEXT")]
    key_text: Option<String>,
}

impl KeyArgs {
    /// The one [`Secret`] the flags name (clap has checked there is one).
    fn secret(&self) -> Result<(Secret, &'static str), String> {
        if let Some(p) = &self.key_file {
            Ok((Secret::File(p.clone()), "--key-file"))
        } else if let Some(v) = &self.key_env {
            Ok((Secret::Env(v.clone()), "--key-env"))
        } else if let Some(b) = &self.key_b64 {
            Ok((Secret::Base64(b.clone()), "--key-b64"))
        } else if let Some(t) = &self.key_text {
            Ok((Secret::Text(t.clone()), "--key-text"))
        } else {
            Err("give the key with --key-file, --key-env, --key-b64 or --key-text".into())
        }
    }

    /// Load the key. Errors name where it was read from, never the secret.
    fn load(&self) -> Result<SecretKey, String> {
        let (secret, flag) = self.secret()?;
        let bytes = secret.load().map_err(|e| format!("{flag}: {e}"))?;
        SecretKey::from_bytes(bytes).map_err(|e| format!("{flag}: {e}"))
    }
}

#[derive(Debug, Args)]
pub(crate) struct SignArgs {
    /// The key id (`keyid` parameter).
    #[arg(long = "key-id")]
    key_id: Option<String>,
    #[command(flatten)]
    key: KeyArgs,
    /// The profile.
    #[arg(long, value_enum, default_value_t = ProfileArg::Rfc9421)]
    profile: ProfileArg,
    /// The service id (legacy profile).
    #[arg(long = "service-id")]
    service_id: Option<String>,
    /// Covered components, e.g. "@method @authority @path content-digest".
    #[arg(long)]
    components: Option<String>,
    /// The `created` time, Unix seconds (default: now).
    #[arg(long)]
    created: Option<u64>,
    /// The `expires` time, Unix seconds.
    #[arg(long)]
    expires: Option<u64>,
    /// Leave out the `nonce` parameter.
    #[arg(long = "no-nonce")]
    no_nonce: bool,
    /// Leave out the `alg` parameter.
    #[arg(long = "no-alg")]
    no_alg: bool,
    /// The signature label (default sig1).
    #[arg(long)]
    label: Option<String>,
    /// The `tag` parameter.
    #[arg(long)]
    tag: Option<String>,
    /// The scheme for `@scheme` / `@target-uri` (the target is origin-form).
    #[arg(long, default_value = "http")]
    scheme: String,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("who").required(true).args(["key_id", "service_id"])))]
pub(crate) struct VerifyArgs {
    /// The key id the signature must use.
    #[arg(long = "key-id")]
    key_id: Option<String>,
    /// The service id (legacy profile).
    #[arg(long = "service-id")]
    service_id: Option<String>,
    #[command(flatten)]
    key: KeyArgs,
    /// The profile (default: rfc9421, or legacy with --service-id alone).
    #[arg(long, value_enum)]
    profile: Option<ProfileArg>,
    /// "Now", Unix seconds (default: the system clock).
    #[arg(long)]
    now: Option<u64>,
    /// Refuse a signature created longer ago than this many seconds.
    #[arg(long = "max-age")]
    max_age: Option<u64>,
    /// Tolerated clock difference in seconds.
    #[arg(long)]
    skew: Option<u64>,
    /// Components the signature must cover.
    #[arg(long)]
    require: Option<String>,
    /// The scheme for `@scheme` / `@target-uri`.
    #[arg(long, default_value = "http")]
    scheme: String,
}

/// The most `sinew sign` and `sinew verify` read from stdin: a request
/// head of up to 64 KiB and a body up to the 1 MiB the signer and the
/// verifier accept by default.
const MAX_INPUT: u64 = 1024 * 1024 + 64 * 1024;

fn read_stdin() -> Result<RawRequest, String> {
    read_request(std::io::stdin().lock(), MAX_INPUT)
}

/// Read one raw request of at most `max` bytes: a larger input is refused
/// after reading `max + 1` bytes, never buffered whole.
fn read_request(input: impl Read, max: u64) -> Result<RawRequest, String> {
    let mut buf = Vec::new();
    input
        .take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read stdin: {e}"))?;
    if buf.len() as u64 > max {
        return Err(format!(
            "the request on stdin exceeds {max} bytes (a head of up to 64 KiB and a body of up to 1 MiB)"
        ));
    }
    RawRequest::parse(&buf).map_err(|e| e.to_string())
}

fn sign_inner(args: SignArgs) -> Result<Vec<u8>, String> {
    let key = args.key.load()?;
    let mut config = match args.profile {
        ProfileArg::Rfc9421 => {
            let id = args
                .key_id
                .clone()
                .ok_or("the rfc9421 profile needs --key-id")?;
            SignConfig::rfc9421(id)
        }
        ProfileArg::Legacy => {
            let id = args
                .service_id
                .clone()
                .or_else(|| args.key_id.clone())
                .ok_or("the legacy profile needs --service-id")?;
            SignConfig::legacy(id)
        }
    };
    if let Some(list) = &args.components {
        let components = parse_components(list).map_err(|e| format!("--components: {e}"))?;
        config = config.components(components);
    }
    if let Some(label) = &args.label {
        config = config.label(label.clone());
    }
    if let Some(tag) = &args.tag {
        config = config.tag(tag.clone());
    }
    config = config
        .nonce(!args.no_nonce)
        .alg(!args.no_alg)
        .scheme(args.scheme.clone());
    let clock = match args.created {
        Some(c) => FixedClock::at_unix(c),
        None => FixedClock::at_unix(sinew_core::Clock::unix_seconds(&sinew_core::SystemClock)),
    };
    let created = sinew_core::Clock::unix_seconds(&clock);
    if let Some(expires) = args.expires {
        let after = expires
            .checked_sub(created)
            .ok_or("--expires must not be before --created")?;
        config = config.expires_in(Duration::from_secs(after));
    }
    let signer = Signer::new(config, key)
        .map_err(|e| e.to_string())?
        .with_clock(clock);
    let raw = read_stdin()?;
    let mut parts = raw.parts.clone();
    signer
        .sign(&mut parts, &raw.body)
        .map_err(|e| format!("cannot sign: {e}"))?;
    Ok(raw.render(&parts))
}

/// `sinew sign`.
pub(crate) fn sign(args: SignArgs) -> ExitCode {
    match sign_inner(args) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            if stdout.write_all(&out).and_then(|_| stdout.flush()).is_err() {
                return ExitCode::from(EXIT_USAGE);
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("sinew sign: {message}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn verifier(args: &VerifyArgs) -> Result<Verifier, String> {
    let key = args.key.load()?;
    let profile = match (args.profile, &args.key_id) {
        (Some(p), _) => p,
        (None, Some(_)) => ProfileArg::Rfc9421,
        (None, None) => ProfileArg::Legacy,
    };
    let mut keys = StaticKeyStore::new();
    match profile {
        ProfileArg::Rfc9421 => {
            let id = args
                .key_id
                .clone()
                .ok_or("the rfc9421 profile needs --key-id")?;
            keys = keys.with_key(id, key);
        }
        ProfileArg::Legacy => {
            let id = args
                .service_id
                .clone()
                .or_else(|| args.key_id.clone())
                .ok_or("the legacy profile needs --service-id")?;
            keys = keys.with_legacy_key(id, key);
        }
    }
    let mut config = VerifyConfig::default()
        .accept(match profile {
            ProfileArg::Rfc9421 => Accept::Rfc9421,
            ProfileArg::Legacy => Accept::Legacy,
        })
        .scheme(args.scheme.clone());
    if let Some(s) = args.max_age {
        config = config.max_age(Duration::from_secs(s));
    }
    if let Some(s) = args.skew {
        config = config.skew(Duration::from_secs(s));
    }
    if let Some(list) = &args.require {
        let components = parse_components(list).map_err(|e| format!("--require: {e}"))?;
        config = config.required_components(components);
    }
    let clock = match args.now {
        Some(n) => FixedClock::at_unix(n),
        None => FixedClock::at_unix(sinew_core::Clock::unix_seconds(&sinew_core::SystemClock)),
    };
    Ok(Verifier::new(config, keys).with_clock(clock))
}

/// `sinew verify`.
pub(crate) fn verify(args: VerifyArgs) -> ExitCode {
    let verifier = match verifier(&args) {
        Ok(v) => v,
        Err(message) => {
            eprintln!("sinew verify: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let raw = match read_stdin() {
        Ok(r) => r,
        Err(message) => {
            eprintln!("sinew verify: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match verifier.verify(&raw.parts, &raw.body) {
        Ok(caller) => {
            eprintln!("valid: key id {}", caller.key_id);
            ExitCode::SUCCESS
        }
        Err(rejection) => {
            eprintln!("invalid: {}: {}", rejection.reason(), rejection.detail());
            ExitCode::from(EXIT_INVALID)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_is_read_up_to_the_cap() {
        let req = b"GET /x HTTP/1.1\nHost: a\n\n".to_vec();
        let max = req.len() as u64;
        assert!(read_request(&req[..], max).is_ok());
        let err = read_request(&req[..], max - 1).unwrap_err();
        assert!(err.contains(&format!("exceeds {} bytes", max - 1)), "{err}");
        // An endless input is cut at the cap.
        let err = read_request(std::io::repeat(b'a'), 1000).unwrap_err();
        assert!(err.contains("exceeds 1000 bytes"), "{err}");
    }
}
