//! Data payload into messages: UTF-8 validation, decompression, and either
//! assembly into whole messages or delivery as fragments, with every size
//! limit enforced before the bytes it limits are stored.

use super::config::Role;
use super::incoming::{Failure, Incoming};
use super::state::{MessageInProgress, Session};
use crate::bufpool::BufPool;
use crate::ws::buffer::reserve_capped;
use crate::ws::deflate::Inflater;
use crate::ws::utf8::Utf8Validator;

/// Feeds the next bytes of a text message to its validator, and at the message's end
/// checks that no character was left unfinished (RFC 6455 §8.1: 1007 otherwise).
pub(super) fn check_utf8(v: &mut Utf8Validator, bytes: &[u8], end: bool) -> Result<(), Failure> {
    v.feed(bytes).map_err(|_| Failure::invalid_utf8())?;
    if end {
        v.finish().map_err(|_| Failure::invalid_utf8())?;
    }
    Ok(())
}

/// The largest piece streaming mode delivers from inflated data at once, so
/// that a small compressed frame cannot become one huge allocation.
pub(super) const STREAM_PIECE: usize = 256 * 1024;

/// Empty buffers a session may fill instead of allocating (see [`Session::read_pooled`]).
#[derive(Debug)]
pub struct Spares<'a> {
    /// Large buffers, for messages assembled from several pieces.
    pub large: &'a mut BufPool,
    /// Small buffers, for messages that arrive whole in one read.
    pub small: &'a mut BufPool,
}

impl Spares<'_> {
    /// A copy of `chunk`, in a pooled buffer when one fits: at least as large (no
    /// reallocation) and not much larger, because the message may wait in the event
    /// queue and a 16-byte message should not hold a 64 KiB buffer meanwhile.
    pub(super) fn copy_small(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut b = self.small_for(chunk.len());
        b.extend_from_slice(chunk);
        b
    }

    /// An empty buffer for a whole message of `n` bytes: pooled when one fits (see
    /// [`Spares::copy_small`]), else a fresh one of exactly that capacity.
    pub(super) fn small_for(&mut self, n: usize) -> Vec<u8> {
        self.small
            .pop_fit(n, n.max(SMALL_FIT) * 2)
            .unwrap_or_else(|| Vec::with_capacity(n))
    }
}

/// Below this size any pooled buffer up to twice it is taken for a message.
const SMALL_FIT: usize = 512;

impl Session {
    /// Uncompressed data: validate, then deliver or buffer.
    pub(super) fn on_plain(
        &mut self,
        message: &mut MessageInProgress,
        chunk: &[u8],
        end: bool,
        items: &mut Vec<Incoming>,
        spares: &mut Spares<'_>,
    ) -> Result<(), Failure> {
        if message.text {
            check_utf8(&mut self.incoming_utf8, chunk, end)?;
        }
        // Widening; the total was checked against the limit in the header.
        message.size += chunk.len() as u64;
        if self.stream_fragments {
            if !chunk.is_empty() || end {
                items.push(Incoming::Fragment {
                    text: message.text,
                    data: chunk.to_vec(),
                    first: !message.emitted,
                    fin: end,
                });
                message.emitted = true;
            }
            return Ok(());
        }
        if end && self.buffer.is_empty() {
            // The common case, a whole frame in one read: one copy.
            items.push(Incoming::Message {
                text: message.text,
                data: spares.copy_small(chunk),
            });
            return Ok(());
        }
        let cap = usize::try_from(self.max_message_size).unwrap_or(usize::MAX);
        if self.buffer.capacity() == 0 {
            if let Some(b) = spares.large.pop_at_least(0) {
                self.buffer = b;
            }
        }
        reserve_capped(&mut self.buffer, chunk.len(), cap);
        self.buffer.extend_from_slice(chunk);
        if end {
            items.push(Incoming::Message {
                text: message.text,
                data: std::mem::take(&mut self.buffer),
            });
        }
        Ok(())
    }

    /// Compressed data: inflate (bounded by the message limit), validate,
    /// then deliver or buffer.
    pub(super) fn on_compressed(
        &mut self,
        message: &mut MessageInProgress,
        chunk: &[u8],
        end: bool,
        items: &mut Vec<Incoming>,
    ) -> Result<(), Failure> {
        let peer_no_context_takeover = self.deflate.is_some_and(|p| match self.role {
            Role::Server => p.client_no_context_takeover,
            Role::Client => p.server_no_context_takeover,
        });
        message.has_compressed_data |= !chunk.is_empty();
        if end && !message.has_compressed_data {
            // RSV1 with no payload at all. RFC 7692 §7.2.3.6 encodes an empty
            // message as the single byte 0x00; appending the tail to nothing
            // would leave the decompressor inside a stored block header and
            // corrupt the next message, so this is taken as an empty message
            // without touching the decompressor.
            items.push(if self.stream_fragments {
                Incoming::Fragment {
                    text: message.text,
                    data: Vec::new(),
                    first: !message.emitted,
                    fin: true,
                }
            } else {
                Incoming::Message {
                    text: message.text,
                    data: Vec::new(),
                }
            });
            return Ok(());
        }
        let inflater = self
            .inflater
            .get_or_insert_with(|| Box::new(Inflater::new(peer_no_context_takeover)));
        let budget = |message: &MessageInProgress| {
            usize::try_from(self.max_message_size.saturating_sub(message.size))
                .unwrap_or(usize::MAX)
        };

        if !self.stream_fragments {
            let start = self.buffer.len();
            inflater
                .inflate_capped(chunk, end, &mut self.buffer, budget(message))
                .map_err(Failure::inflate)?;
            let inflated = self.buffer.get(start..).unwrap_or_default();
            if message.text {
                check_utf8(&mut self.incoming_utf8, inflated, end)?;
            }
            message.size = message.size.saturating_add(inflated.len() as u64);
            if end {
                items.push(Incoming::Message {
                    text: message.text,
                    data: std::mem::take(&mut self.buffer),
                });
            }
            return Ok(());
        }

        let mut rest = chunk;
        loop {
            let budget = budget(message);
            let mut piece = Vec::new();
            let used = inflater
                .inflate(
                    rest,
                    end,
                    &mut piece,
                    budget.saturating_add(1).min(STREAM_PIECE),
                )
                .map_err(Failure::inflate)?;
            rest = rest.get(used..).unwrap_or_default();
            if piece.len() > budget {
                return Err(Failure::too_big("message too big"));
            }
            let more = !rest.is_empty() || inflater.has_pending_output();
            let last = end && !more;
            if message.text {
                check_utf8(&mut self.incoming_utf8, &piece, last)?;
            }
            message.size = message.size.saturating_add(piece.len() as u64);
            if !piece.is_empty() || last {
                items.push(Incoming::Fragment {
                    text: message.text,
                    data: piece,
                    first: !message.emitted,
                    fin: last,
                });
                message.emitted = true;
            }
            if !more {
                return Ok(());
            }
        }
    }
}
