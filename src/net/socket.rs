//! Creating listening sockets with the options mio does not expose.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// Opens a non-blocking TCP listener.
pub fn tcp_listener(
    addr: SocketAddr,
    backlog: u32,
    reuse_port: bool,
) -> io::Result<mio::net::TcpListener> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    // SO_REUSEADDR: restart without waiting for TIME_WAIT to expire.
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        // "[::]" means IPv6 only; listen on "0.0.0.0" too for IPv4.
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    s.listen(backlog.clamp(1, i32::MAX as u32) as i32)?;
    Ok(mio::net::TcpListener::from_std(s.into()))
}

/// Opens a non-blocking UDP socket bound to `addr`.
pub fn udp_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<mio::net::UdpSocket> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    Ok(mio::net::UdpSocket::from_std(s.into()))
}
