//! libwsserver: a fast, memory-safe HTTP/1.1 and WebSocket server library with a C ABI.
//!
//! Layers (see README.md): `ffi` (the C ABI, the only place with `extern "C"`), `mgr`
//! (the event manager), `conn` (one connection), the sans-IO protocol code in `http`,
//! and transports in `net`.
#![deny(rust_2018_idioms, unused_imports)]

pub mod config;
pub mod conn;
pub mod error;
pub mod event;
pub mod ffi;
pub mod http;
pub mod mgr;
pub mod net;
pub mod slots;
pub mod timerfd;
pub mod timers;
pub mod url;
