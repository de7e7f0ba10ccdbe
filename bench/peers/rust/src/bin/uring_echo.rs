//! uring_echo: the ceiling of raw_echo again, over io_uring instead of epoll: it answers
//! the WebSocket handshake, then copies every byte back unchanged (run the load
//! generator with --allow-masked). One ring, one recv or send in flight per connection,
//! every completion of a batch answered in one `io_uring_enter`, so it makes a fraction
//! of the system calls of an epoll server. Its row shows what that saves on this
//! machine. Not a WebSocket server; never in a ratio.
//!   uring_echo PORT     (0 picks a free port; the port is printed)
use io_uring::{opcode, types, IoUring};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd};

#[path = "../handshake.rs"]
mod handshake;
use handshake::{head_end, switching_protocols};

const ACCEPT: u64 = u64::MAX;
const BUF: usize = 256 * 1024;

/// Answers the handshake on a blocking socket (the client sends its request right after
/// connecting); false when the client went away.
fn upgrade(fd: i32) -> bool {
    // SAFETY: fd was just accepted and is owned here; into_raw_fd gives it back.
    let mut s = unsafe { TcpStream::from_raw_fd(fd) };
    let ok = answer(&mut s).is_ok();
    let _ = s.into_raw_fd();
    ok
}

fn answer(s: &mut TcpStream) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    let end = loop {
        let r = s.read(&mut buf[n..])?;
        if r == 0 || n + r == buf.len() {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        n += r;
        if let Some(end) = head_end(&buf[..n]) {
            break end;
        }
    };
    if end != n {
        // The load generator waits for the 101 before its first frame.
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    s.write_all(switching_protocols(&buf[..end]).as_bytes())
}

struct Conn {
    fd: i32,
    buf: Vec<u8>,
    /// Bytes received and not yet sent back.
    len: usize,
    sent: usize,
}

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    let lfd = listener.as_raw_fd();
    let mut ring = IoUring::new(4096)?;
    println!("uring_echo listening on ws://127.0.0.1:{}", listener.local_addr()?.port());
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let accept = opcode::Accept::new(types::Fd(lfd), std::ptr::null_mut(), std::ptr::null_mut()).build().user_data(ACCEPT);
    // SAFETY (every push): the buffers named by an entry live in `conns` until its completion.
    unsafe { ring.submission().push(&accept) }.expect("ring has room");
    loop {
        ring.submit_and_wait(1)?;
        let done: Vec<(u64, i32)> = ring.completion().map(|c| (c.user_data(), c.result())).collect();
        for (ud, res) in done {
            let entry = if ud == ACCEPT {
                if res >= 0 && upgrade(res) {
                    let i = conns.iter().position(Option::is_none).unwrap_or(conns.len());
                    if i == conns.len() {
                        conns.push(None);
                    }
                    conns[i] = Some(Conn { fd: res, buf: vec![0; BUF], len: 0, sent: 0 });
                    let c = conns[i].as_mut().unwrap();
                    let recv = opcode::Recv::new(types::Fd(c.fd), c.buf.as_mut_ptr(), BUF as u32).build().user_data((i as u64) << 1);
                    unsafe { ring.submission().push(&recv) }.expect("ring has room");
                } else if res >= 0 {
                    // SAFETY: an accepted descriptor nobody else holds.
                    drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(res) });
                }
                accept.clone()
            } else {
                let i = (ud >> 1) as usize;
                let Some(c) = conns[i].as_mut() else { continue };
                let sending = ud & 1 == 1;
                if res <= 0 {
                    // End of stream or an error: this connection is done.
                    drop(unsafe { std::os::fd::OwnedFd::from_raw_fd(c.fd) });
                    conns[i] = None;
                    continue;
                }
                if sending {
                    c.sent += res as usize;
                } else {
                    c.len = res as usize;
                    c.sent = 0;
                }
                if c.sent < c.len {
                    let rest = &c.buf[c.sent..c.len];
                    opcode::Send::new(types::Fd(c.fd), rest.as_ptr(), rest.len() as u32).build().user_data(((i as u64) << 1) | 1)
                } else {
                    opcode::Recv::new(types::Fd(c.fd), c.buf.as_mut_ptr(), BUF as u32).build().user_data((i as u64) << 1)
                }
            };
            unsafe { ring.submission().push(&entry) }.expect("ring has room");
        }
    }
}
