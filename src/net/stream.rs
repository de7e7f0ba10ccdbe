//! The byte stream under a connection: plain TCP, or rustls over TCP.

use crate::net::nosignal::{self, NoSigPipe};
use crate::net::tls::TlsStream;
use mio::net::TcpStream;
use std::io::{self, IoSlice, Read};
use std::os::fd::AsRawFd;

/// TLS over a TCP socket.
#[derive(Debug)]
pub struct TlsConn {
    /// The socket.
    pub sock: TcpStream,
    /// The TLS session.
    pub tls: TlsStream,
    /// The verified client certificate's identity (mutual TLS), once the handshake is done.
    pub peer_identity: Option<String>,
    /// When the handshake started (for its timeout).
    pub started: std::time::Instant,
}

/// A connected stream socket.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<TlsConn>),
}

impl Stream {
    /// Reads plaintext; `WouldBlock` when nothing is available now.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(t) => t.tls.read(&mut NoSigPipe(&t.sock), buf),
        }
    }

    /// Reads at most `max` bytes of plaintext onto the end of `buf`, growing it as
    /// needed; returns how many (0 at end of stream, `WouldBlock` when none now).
    /// On plain TCP the kernel copies straight into `buf`'s spare capacity.
    pub fn read_append(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
        buf.reserve(max);
        match self {
            Stream::Tcp(s) => {
                let spare = buf.spare_capacity_mut();
                let len = spare.len().min(max);
                // SAFETY: recv writes at most `len` bytes into memory `buf` owns
                // (its spare capacity) and reads none of it.
                let r = unsafe { libc::recv(s.as_raw_fd(), spare.as_mut_ptr().cast(), len, 0) };
                let n = usize::try_from(r).map_err(|_| io::Error::last_os_error())?;
                // SAFETY: the first n bytes of the spare capacity were written by recv.
                unsafe { buf.set_len(buf.len() + n) };
                Ok(n)
            }
            Stream::Tls(t) => {
                // rustls copies plaintext out of its own buffer: read through a slice.
                let start = buf.len();
                buf.resize(start + max, 0);
                let r = t.tls.read(&mut NoSigPipe(&t.sock), &mut buf[start..]);
                buf.truncate(start + *r.as_ref().unwrap_or(&0));
                r
            }
        }
    }

    /// Writes plaintext; returns how much was taken. Never raises SIGPIPE (see
    /// [`nosignal`]): a vanished peer is an `EPIPE` or `ECONNRESET` error.
    pub fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => nosignal::send(s.as_raw_fd(), data),
            Stream::Tls(t) => t.tls.write(&mut NoSigPipe(&t.sock), data),
        }
    }

    /// Writes several slices, in one system call on plain TCP; never raises SIGPIPE.
    pub fn write_vectored(&mut self, parts: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => nosignal::send_vectored(s.as_raw_fd(), parts),
            Stream::Tls(t) => {
                // rustls encrypts piece by piece anyway: feed it until it stops taking.
                let mut total = 0;
                for p in parts {
                    match t.tls.write(&mut NoSigPipe(&t.sock), p) {
                        Ok(n) => {
                            total += n;
                            if n < p.len() {
                                break;
                            }
                        }
                        Err(e) if total > 0 && e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                Ok(total)
            }
        }
    }

    /// Pushes bytes the transport holds itself (TLS records); true when none are left.
    pub fn flush_pending(&mut self) -> io::Result<bool> {
        match self {
            Stream::Tcp(_) => Ok(true),
            Stream::Tls(t) => t.tls.flush(&mut NoSigPipe(&t.sock)),
        }
    }

    /// Whether the transport holds bytes of its own to write.
    pub fn wants_write(&self) -> bool {
        match self {
            Stream::Tcp(_) => false,
            Stream::Tls(t) => t.tls.wants_write(),
        }
    }

    /// Whether a handshake is still running (writes are buffered until it ends).
    pub fn is_handshaking(&self) -> bool {
        match self {
            Stream::Tcp(_) => false,
            Stream::Tls(t) => t.tls.is_handshaking(),
        }
    }

    /// Whether this is a TLS stream.
    pub fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }

    /// The socket, for registration and addresses.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Tcp(s) => s,
            Stream::Tls(t) => &t.sock,
        }
    }

    /// The socket, mutably, for registration.
    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Stream::Tcp(s) => s,
            Stream::Tls(t) => &mut t.sock,
        }
    }

    /// Ends the write side (TLS: close_notify first).
    pub fn shutdown_write(&mut self) {
        if let Stream::Tls(t) = self {
            t.tls.send_close_notify();
            let _ = t.tls.flush(&mut NoSigPipe(&t.sock));
        }
        let _ = self.tcp().shutdown(std::net::Shutdown::Write);
    }
}
