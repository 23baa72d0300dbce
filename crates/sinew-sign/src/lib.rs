//! HTTP message signing for sinew.
#![forbid(unsafe_code)]
#![deny(unreachable_pub)]
#![warn(missing_docs)]

mod base;
mod component;
mod config;
mod digest;
mod error;
mod key;
mod replay;
mod signer;
mod verifier;

pub use base::{signature_base, BaseError, MessageRef, ParamsError, SignatureParams};
pub use component::{parse_components, Component, ComponentError};
pub use config::{Accept, Profile, SignConfig, VerifyConfig};
pub use digest::content_digest;
pub use error::{Rejection, RejectionKind, SignError};
pub use key::{KeyError, KeyStore, SecretKey, StaticKeyStore};
pub use signer::{Signer, ALG_HMAC_SHA256};
pub use verifier::{VerifiedCaller, Verifier};
