//! The permessage-deflate extension (RFC 7692): negotiation, compression and
//! bounded decompression.
//!
//! RFC 7692 §7.2.1: a message is compressed as raw DEFLATE ending with an
//! empty stored block (a sync flush), and "Remove 4 octets (that are 0x00
//! 0x00 0xff 0xff) from the tail end". §7.2.2: the receiver appends those
//! four octets back before inflating. With context takeover (the default)
//! the LZ77 window carries over from one message to the next, so both ends
//! keep one compressor or decompressor per direction for the whole
//! connection.
//!
//! Layout:
//! - `negotiation`: the extension's parameters (RFC 7692 §5, §7.1), offered,
//!   answered and accepted; what both ends agree on is a [`DeflateParams`].
//! - `codec`: one [`Deflater`] and one [`Inflater`] per connection, the
//!   latter bounded by the caller's size limits.
//! - `window`: the window sizes both build on.

mod codec;
mod negotiation;
mod window;

pub use codec::{CompressError, Deflater, InflateError, Inflater};
pub use negotiation::{
    DeflateConfig, DeflateParams, DeflateResponse, ExtensionError, EXTENSION_NAME,
};
pub use window::{MAX_WINDOW_BITS, MIN_WINDOW_BITS};

#[cfg(test)]
mod tests;
