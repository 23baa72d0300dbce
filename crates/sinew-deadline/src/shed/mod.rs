//! Priority-aware load shedding: [`ShedLayer`].

mod future;
mod layer;
mod state;

pub use future::ResponseFuture;
pub use layer::{Shed, ShedLayer};
