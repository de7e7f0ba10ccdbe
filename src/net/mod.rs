//! Transports: plain TCP streams (and, with `tls`, rustls over them) and socket setup.

pub mod nosignal;
pub mod socket;
pub mod stream;
pub mod tls;
