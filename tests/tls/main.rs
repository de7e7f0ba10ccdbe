//! TLS layer tests (src/net/tls): configuration errors, loopback sessions driven by an
//! edge-triggered mio loop, in-memory delivery patterns, garbage peers, and openssl.
//! The certificates come from the shared harness (tests/common); `peer` drives
//! `TlsStream`s without the manager.

#[path = "../common/mod.rs"]
mod common;
mod config;
mod garbage;
mod loopback;
mod memory;
mod openssl;
mod peer;
