//! libwsserver: a fast, memory-safe HTTP/1.1 and WebSocket server library with a C ABI.
//!
//! Layers (see README.md): `ffi` (the C ABI, the only place with `extern "C"`), `mgr`
//! (the event manager), `conn` (one connection), the sans-IO protocol code in `http`,
//! and transports in `net`.
#![deny(rust_2018_idioms, unused_imports)]

// cbindgen reads only src/ffi/: every other module is marked `cbindgen:ignore`, so their
// public constants and types never leak into the C header.

/// cbindgen:ignore
pub mod broker;
/// cbindgen:ignore
pub mod bufpool;
/// cbindgen:ignore
pub mod clock;
/// cbindgen:ignore
pub mod config;
/// cbindgen:ignore
pub mod conn;
/// cbindgen:ignore
pub mod error;
/// cbindgen:ignore
pub mod event;
pub mod ffi;
/// cbindgen:ignore
pub mod files;
/// cbindgen:ignore
pub mod http;
/// cbindgen:ignore
pub mod mgr;
/// cbindgen:ignore
pub mod net;
/// cbindgen:ignore
pub mod slots;
/// cbindgen:ignore
pub mod timerfd;
/// cbindgen:ignore
pub mod timers;
/// cbindgen:ignore
pub mod url;
/// cbindgen:ignore
pub mod ws;
