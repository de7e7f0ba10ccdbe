//! The harness of the Rust integration tests. A test file declares `mod common;` and
//! `use common::*;`, and has:
//!
//! - `server`: [`Loop`], a manager polled through the C API on its own thread, the one
//!   way tests run one (`Loop::serve` to listen at once, `Loop::start` for a manager the
//!   test drives), the events it logs ([`Ev`]) and the bounded waits on them;
//! - `calls`: the C calls handlers make (`reply`, `ws_send`, `ws_close`...) and the
//!   `echo` handler;
//! - `client`: the raw HTTP client (exact request bytes, [`Response`]);
//! - `ws`: the raw WebSocket client ([`Ws`], exact frames) and the test data it sends;
//! - `deflate` and `inflate`: permessage-deflate on the test's side; [`Inflate`] is the
//!   reference inflater every compression test decodes with;
//! - `certs`: certificates made at test time, and a scratch directory.
//!
//! Every wait is bounded, so a broken server fails a test instead of hanging it.

// Each test binary compiles this whole module and uses a different part of it.
#![allow(dead_code, unused_imports)]

pub mod calls;
pub mod certs;
pub mod client;
pub mod deflate;
pub mod inflate;
pub mod server;
pub mod ws;

pub use calls::*;
pub use certs::*;
pub use client::*;
pub use deflate::*;
pub use inflate::*;
pub use server::*;
pub use ws::*;
