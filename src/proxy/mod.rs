//! The inbound data path: a request in, a response out. [`pipeline`] lists the lifecycle in order;
//! the other modules are its parts (routing, upstream client, forwarded headers, errors, bodies).

pub mod attempt_timer;
pub mod body;
mod checks;
pub mod context;
pub mod error;
pub mod forwarded;
pub mod headers;
pub mod pipeline;
pub mod request_body;
pub mod request_id;
pub mod router;
pub mod upstream;

pub use pipeline::Pipeline;
