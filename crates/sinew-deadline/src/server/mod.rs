//! The server side: [`ServerDeadlineLayer`] parses the caller's deadline and
//! priority into a [`CallContext`](sinew_core::CallContext).

mod future;
mod layer;

pub use future::ResponseFuture;
pub use layer::{parse_headers, ParsedHeaders, ServerDeadline, ServerDeadlineLayer};
