//! TLS layer tests (src/net/tls): configuration errors, loopback sessions driven by an
//! edge-triggered mio loop, in-memory delivery patterns, garbage peers, and openssl.

mod common;
mod config;
mod garbage;
mod loopback;
mod memory;
mod openssl;
