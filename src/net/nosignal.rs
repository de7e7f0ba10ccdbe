//! Writing to a socket without SIGPIPE.
//!
//! A write to a TCP socket whose peer has gone (reset, or closed before our data
//! arrived) fails with `EPIPE`, and the kernel also raises SIGPIPE in the writing
//! thread, whose default action kills the process. Rust programs ignore SIGPIPE before
//! `main`; the C and LuaJIT programs that load this library do not, and a library must
//! not change a host's signal dispositions. So every byte this library writes to a
//! stream socket goes through `send`/`sendmsg` with `MSG_NOSIGNAL`, which turns the
//! signal into a plain `EPIPE` error: `writev(2)` (what `Write::write_vectored` and
//! rustls's `write_tls` use) has no such flag.
//!
//! [`NoSigPipe`] wraps a borrowed socket as `Read + Write` for rustls, which takes the
//! socket as a generic stream; plain connections call [`send`] and [`send_vectored`].

use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, RawFd};

/// Most slices one `sendmsg` takes (`IOV_MAX` on Linux); the rest waits for the next call,
/// which a short count already tells the caller to make.
const IOV_MAX: usize = 1024;

/// `send(2)` with `MSG_NOSIGNAL`: the bytes the socket took, or the error (`EPIPE` when
/// the peer is gone, never a signal).
pub fn send(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: `data` is readable for its length; send reads at most that much.
    let r = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

/// `sendmsg(2)` of several slices with `MSG_NOSIGNAL`, in one system call.
pub fn send_vectored(fd: RawFd, parts: &[IoSlice<'_>]) -> io::Result<usize> {
    let parts = &parts[..parts.len().min(IOV_MAX)];
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with `struct iovec` on Unix; sendmsg only
    // reads through the pointer despite its `*mut` type.
    msg.msg_iov = parts.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = parts.len() as _;
    // SAFETY: `msg` points at `parts`, which outlive the call and stay unmodified.
    let r = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
    usize::try_from(r).map_err(|_| io::Error::last_os_error())
}

/// A borrowed socket whose writes never raise SIGPIPE, for code that takes a generic
/// `Read + Write` stream (rustls).
#[derive(Debug)]
pub struct NoSigPipe<'a, S>(pub &'a S);

impl<S> Read for NoSigPipe<'_, S>
where
    for<'b> &'b S: Read,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut s = self.0;
        s.read(buf)
    }
}

impl<S: AsRawFd> Write for NoSigPipe<'_, S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        send(self.0.as_raw_fd(), buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        send_vectored(self.0.as_raw_fd(), bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// A write to a socket whose peer reset the connection is an `EPIPE`/`ECONNRESET`
    /// error. (The test binary ignores SIGPIPE, so the signal itself is tested from C and
    /// LuaJIT hosts: tests/c/robustness_test.c, tests/lua/sigpipe_spec.lua.)
    #[test]
    fn writes_to_a_vanished_peer_fail_plainly() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (peer, _) = l.accept().unwrap();
        socket2::SockRef::from(&peer)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(peer);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let data = [0u8; 1024];
        let mut failed = None;
        for _ in 0..100 {
            let parts = [IoSlice::new(&data), IoSlice::new(&data)];
            match NoSigPipe(&c).write_vectored(&parts) {
                Ok(n) => assert!(n > 0),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let e = failed.expect("a write to a reset socket fails");
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
            ),
            "{e}"
        );
    }

    #[test]
    fn vectored_sends_gather_every_slice() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut peer, _) = l.accept().unwrap();
        let parts = [IoSlice::new(b"ab"), IoSlice::new(b""), IoSlice::new(b"cde")];
        assert_eq!(send_vectored(c.as_raw_fd(), &parts).unwrap(), 5);
        assert_eq!(send(c.as_raw_fd(), b"f").unwrap(), 1);
        let mut got = [0u8; 6];
        peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"abcdef");
    }
}
