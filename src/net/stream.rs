//! The byte stream under a connection.

use mio::net::TcpStream;
use std::io::{self, IoSlice, Read, Write};

/// A connected stream socket.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
}

impl Stream {
    /// Reads plaintext; `WouldBlock` when nothing is available now.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
        }
    }

    /// Writes plaintext; returns how much was taken.
    pub fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(data),
        }
    }

    /// Writes several slices in one system call where the transport allows it.
    pub fn write_vectored(&mut self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(parts),
        }
    }

    /// Pushes bytes the transport holds itself (TLS records); true when none are left.
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Stream::Tcp(_) => Ok(true),
        }
    }

    /// Whether the transport holds bytes of its own to write.
    pub fn wants_write(&self) -> bool {
        match self {
            Stream::Tcp(_) => false,
        }
    }

    /// Whether a handshake is still running (writes are buffered until it ends).
    pub fn is_handshaking(&self) -> bool {
        match self {
            Stream::Tcp(_) => false,
        }
    }

    /// The socket, for registration and addresses.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Tcp(s) => s,
        }
    }

    /// The socket, mutably, for registration.
    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Stream::Tcp(s) => s,
        }
    }

    /// Ends the write side (TLS: close_notify first).
    pub fn shutdown_write(&mut self) {
        let _ = self.tcp().shutdown(std::net::Shutdown::Write);
    }
}
