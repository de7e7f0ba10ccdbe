//! Running out of file descriptors is survived: connections beyond the limit are shed
//! cleanly, the listener does not stall, and once descriptors are free new clients are
//! served. (Its own test binary: it lowers this process's descriptor limit.)

mod common;

use common::*;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use wsserver::ffi::event::wss_event_kind::*;

#[test]
fn out_of_descriptors_is_survived() {
    let srv = Loop::serve("http://127.0.0.1:0", None, |ctx, ev| {
        if ev.is(WSS_EV_HTTP_MSG) {
            reply(ctx, ev.conn, 200, "", b"ok");
        }
    });
    // Leave room for a few dozen descriptors above what is open now.
    let open_now = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
    let limit = open_now + 40;
    let lim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit.max(4096),
    };
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);

    // Open clients until the process (clients and server share it) runs out.
    let mut clients = Vec::new();
    for _ in 0..200 {
        match TcpStream::connect(srv.addr()) {
            Ok(c) => clients.push(c),
            Err(_) => break,
        }
    }
    srv.wait_for("the exhaustion report", |l| {
        l.iter()
            .any(|e| e.is(WSS_EV_ERROR) && e.text().contains("accept failed"))
    });
    // Free everything: the server must accept and serve again, without a stall.
    drop(clients);
    let t0 = Instant::now();
    loop {
        let ok = TcpStream::connect(srv.addr()).ok().map(|mut c| {
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            roundtrip(&mut c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n").status == 200
        });
        if ok == Some(true) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "not serving after descriptors were freed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
