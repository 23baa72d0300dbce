//! The sinew client stacks under test.
//!
//! Work in progress: the layers are switched on here as each lands; until
//! then the `sinew` rows measure the facade over hyper-util alone.

use std::net::SocketAddr;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The sinew client with every layer on, balanced over `backends`.
pub(crate) fn client(backends: &[SocketAddr]) -> Result<sinew::Client, BoxError> {
    let first = backends.first().ok_or("no backends")?;
    Ok(sinew::Client::builder()
        .base_url(&format!("http://{first}"))
        .pool_max_idle_per_host(256)
        .build()?)
}

/// The client of the server pair.
pub(crate) fn signing_client(target: SocketAddr) -> Result<sinew::Client, BoxError> {
    Ok(sinew::Client::builder()
        .base_url(&format!("http://{target}"))
        .pool_max_idle_per_host(256)
        .build()?)
}
