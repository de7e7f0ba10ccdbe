//! HTTP/1.1: request parsing (sans-IO), the per-connection server state machine,
//! replies and static files.

pub mod chunked;
pub mod date;
pub mod request;
pub mod response;
pub mod server;
pub mod static_files;
