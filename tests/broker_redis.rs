//! The broker session against a real `redis-server` (Debian's package), driven over plain
//! `std::net::TcpStream`s by a small non-blocking loop: the wiring the manager will do,
//! without the manager.
//!
//! Each test starts its own server on a free 127.0.0.1 port with no persistence and kills
//! it at the end, also on panic (a guard with `Drop`). When `redis-server` is missing the
//! tests try `apt-get install redis-server` once (as root); if that fails they print why
//! and are skipped.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use wsserver::broker::resp::{self, Limits, Value};
use wsserver::broker::{
    Config, Delivery, Kind, Link, LinkState, Output, RedisUrl, ServerError, Session, Status,
};

// ---------------------------------------------------------------------------------------
// redis-server

fn find_redis() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from));
    dirs.into_iter()
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

/// The `redis-server` binary, installed with apt-get when missing (once per process).
fn redis_server() -> Option<&'static PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = find_redis() {
            return Some(p);
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            eprintln!("broker_redis: redis-server missing, installing it with apt-get");
            let install = "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server \
                 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
                 apt-get install -y -qq redis-server)";
            let _ = Command::new("sh")
                .args(["-c", install])
                .stdout(Stdio::null())
                .status();
        }
        find_redis()
    })
    .as_ref()
}

macro_rules! need_redis {
    () => {
        match redis_server() {
            Some(bin) => bin,
            None => {
                println!(
                    "SKIPPED {}: redis-server is not installed and apt-get could not install it",
                    module_path!()
                );
                return;
            }
        }
    };
}

/// A redis-server process, killed when dropped (also when a test panics).
struct Redis {
    bin: PathBuf,
    port: u16,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Redis {
    fn start(bin: &Path, extra: &[&str]) -> Redis {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut r = Redis {
            bin: bin.to_path_buf(),
            port,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let dir = std::env::temp_dir();
        let child = Command::new(&self.bin)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--dir", dir.to_str().unwrap()])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(v) = command(self.port, &[&[b"PING"]]) {
                if v.iter()
                    .all(|v| matches!(v, Value::Simple(_) | Value::Error(_)))
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn url(&self, userinfo: &str) -> String {
        format!("redis://{userinfo}127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends commands on a fresh connection and returns one reply per command.
fn command(port: u16, cmds: &[&[&[u8]]]) -> std::io::Result<Vec<Value>> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = Vec::new();
    for c in cmds {
        resp::encode_command(&mut out, c);
    }
    s.write_all(&out)?;
    let mut d = resp::Decoder::new(Limits::default());
    let mut replies = Vec::new();
    let mut buf = [0u8; 4096];
    while replies.len() < cmds.len() {
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        d.feed(&buf[..n]);
        while let Some(v) = d.next_value().map_err(std::io::Error::other)? {
            replies.push(v);
        }
    }
    Ok(replies)
}

// ---------------------------------------------------------------------------------------
// A node: a session and its two sockets

struct Node {
    s: Session,
    addr: SocketAddr,
    conns: [Option<TcpStream>; 2],
    delivered: Vec<Delivery>,
    statuses: Vec<Status>,
    errors: Vec<ServerError>,
}

fn idx(link: Link) -> usize {
    match link {
        Link::Sub => 0,
        Link::Pub => 1,
    }
}

impl Node {
    fn new(url: &str, prefix: &str) -> Node {
        let u = RedisUrl::parse(url).unwrap();
        let mut cfg = Config::from_url(&u);
        cfg.prefix = prefix.as_bytes().to_vec();
        // Short delays: the restart test should not wait for a 10 s cap.
        cfg.backoff_min = Duration::from_millis(50);
        cfg.backoff_max = Duration::from_millis(500);
        Node {
            s: Session::new(cfg, Instant::now()),
            addr: u.host_port().parse().unwrap(),
            conns: [None, None],
            delivered: Vec::new(),
            statuses: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// One turn of the loop: time, outputs, writes, reads. True when anything happened.
    fn step(&mut self) -> bool {
        let mut busy = false;
        let now = Instant::now();
        self.s.tick(now);
        while let Some(out) = self.s.poll_output() {
            busy = true;
            match out {
                Output::Connect(link) => {
                    match TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)) {
                        Ok(c) => {
                            c.set_nonblocking(true).unwrap();
                            c.set_nodelay(true).unwrap();
                            self.conns[idx(link)] = Some(c);
                            self.s.connected(link, Instant::now());
                        }
                        Err(e) => self.s.disconnected(link, &e.to_string(), Instant::now()),
                    }
                }
                Output::Close(link) => self.conns[idx(link)] = None,
                Output::Deliver(d) => self.delivered.push(d),
                Output::Status(st) => self.statuses.push(st),
                Output::ServerError(e) => self.errors.push(e),
            }
        }
        for link in Link::ALL {
            let Some(c) = self.conns[idx(link)].as_mut() else {
                continue;
            };
            let out = self.s.outgoing(link);
            if !out.is_empty() {
                match c.write(out) {
                    Ok(n) => {
                        busy = true;
                        self.s.written(link, n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => {
                        self.conns[idx(link)] = None;
                        self.s.disconnected(link, &e.to_string(), Instant::now());
                        continue;
                    }
                }
            }
            let mut buf = [0u8; 16 << 10];
            while let Some(c) = self.conns[idx(link)].as_mut() {
                match c.read(&mut buf) {
                    Ok(0) => {
                        self.conns[idx(link)] = None;
                        self.s
                            .disconnected(link, "closed by the server", Instant::now());
                        busy = true;
                    }
                    Ok(n) => {
                        busy = true;
                        self.s.received(link, &buf[..n], Instant::now());
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        self.conns[idx(link)] = None;
                        self.s.disconnected(link, &e.to_string(), Instant::now());
                        busy = true;
                    }
                }
            }
        }
        busy
    }

    fn down_reasons(&self, link: Link) -> Vec<String> {
        self.statuses
            .iter()
            .filter(|st| st.link == link && st.state == LinkState::Down)
            .map(|st| st.reason.clone())
            .collect()
    }

    fn from(&self, origin: &Session) -> Vec<&Delivery> {
        let id = origin.node_id();
        self.delivered
            .iter()
            .filter(|d| d.origin == Some(id))
            .collect()
    }
}

/// Steps every node until `done` holds (true) or `secs` pass (false).
fn run_until(
    nodes: &mut [&mut Node],
    secs: u64,
    mut done: impl FnMut(&[&mut Node]) -> bool,
) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let mut busy = false;
        for n in nodes.iter_mut() {
            busy |= n.step();
        }
        if done(nodes) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        if !busy {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Steps every node for a while (to see that nothing more arrives).
fn run_for(nodes: &mut [&mut Node], ms: u64) {
    let end = Instant::now() + Duration::from_millis(ms);
    run_until(nodes, ms / 1000 + 1, |_| Instant::now() > end);
}

fn ready(nodes: &[&mut Node], topic: &[u8]) -> bool {
    nodes
        .iter()
        .all(|n| n.s.is_up() && n.s.is_subscribed(topic))
}

// ---------------------------------------------------------------------------------------

#[test]
fn a_publish_reaches_every_other_node_once_and_not_its_publisher() {
    let bin = need_redis!();
    let redis = Redis::start(bin, &[]);
    let mut a = Node::new(&redis.url(""), "app:");
    let mut b = Node::new(&redis.url(""), "app:");
    let mut c = Node::new(&redis.url(""), "app:");
    a.s.add_topic(b"room");
    b.s.add_topic(b"room");
    c.s.add_topic(b"elsewhere");
    assert!(
        run_until(&mut [&mut a, &mut b, &mut c], 10, |n| ready(
            &n[..2],
            b"room"
        ) && ready(
            &n[2..],
            b"elsewhere"
        )),
        "not subscribed: {:?} {:?} {:?}",
        a.s,
        b.s,
        c.s
    );
    for i in 0..200u32 {
        let kind = if i % 2 == 0 { Kind::Text } else { Kind::Binary };
        let mut payload = format!("a{i}").into_bytes();
        if kind == Kind::Binary {
            payload.extend_from_slice(&[0, 0xff, b'\r', b'\n']);
        }
        a.s.publish(b"room", &payload, kind, Instant::now());
        if i % 4 == 0 {
            b.s.publish(
                b"room",
                format!("b{i}").as_bytes(),
                Kind::Text,
                Instant::now(),
            );
        }
        // Interleave a little I/O with the publishes, as a busy node would.
        if i % 16 == 0 {
            a.step();
            b.step();
        }
    }
    // A program without the envelope publishes too.
    let r = command(redis.port, &[&[b"PUBLISH", b"app:room", b"from redis-cli"]]).unwrap();
    assert_eq!(r, vec![Value::Integer(2)]);
    assert!(
        run_until(&mut [&mut a, &mut b, &mut c], 10, |n| n[1].delivered.len()
            == 201
            && n[0].delivered.len() == 51),
        "a got {}, b got {}",
        a.delivered.len(),
        b.delivered.len()
    );
    run_for(&mut [&mut a, &mut b, &mut c], 300);

    // B got A's 200, in order, with their kinds and bytes, once each.
    let from_a = b.from(&a.s);
    assert_eq!(from_a.len(), 200);
    for (i, d) in from_a.iter().enumerate() {
        assert_eq!(d.topic, b"room");
        let mut want = format!("a{i}").into_bytes();
        if i % 2 == 1 {
            want.extend_from_slice(&[0, 0xff, b'\r', b'\n']);
            assert_eq!(d.kind, Kind::Binary);
        } else {
            assert_eq!(d.kind, Kind::Text);
        }
        assert_eq!(d.payload, want);
    }
    // A got B's 50 and none of its own.
    assert_eq!(a.from(&b.s).len(), 50);
    assert!(a.from(&a.s).is_empty() && b.from(&b.s).is_empty());
    assert_eq!(a.s.counters().own_suppressed, 200);
    assert_eq!(b.s.counters().own_suppressed, 50);
    // The foreign message reached both subscribers, as text.
    for n in [&a, &b] {
        let foreign: Vec<_> = n.delivered.iter().filter(|d| d.origin.is_none()).collect();
        assert_eq!(foreign.len(), 1);
        assert_eq!(foreign[0].payload, b"from redis-cli");
        assert_eq!(foreign[0].kind, Kind::Text);
    }
    // C subscribes to another topic only.
    assert!(c.delivered.is_empty());
    assert_eq!(c.s.counters().received, 0);
    // Every publish was acknowledged; nothing was lost or refused.
    for n in [&a, &b] {
        let k = n.s.counters();
        assert_eq!(k.published, k.publish_confirmed, "{k:?}");
        assert_eq!(
            (k.not_forwarded, k.publish_errors, k.protocol_errors),
            (0, 0, 0)
        );
        assert!(n.errors.is_empty(), "{:?}", n.errors);
    }
    // Unsubscribing stops delivery.
    b.s.remove_topic(b"room");
    let numsub = vec![Value::Array(vec![
        Value::Bulk(b"app:room".to_vec()),
        Value::Integer(1),
    ])];
    assert!(run_until(&mut [&mut a, &mut b], 5, |_| {
        command(redis.port, &[&[b"PUBSUB", b"NUMSUB", b"app:room"]]).unwrap() == numsub
    }));
    a.s.publish(b"room", b"after", Kind::Text, Instant::now());
    run_for(&mut [&mut a, &mut b], 300);
    assert_eq!(b.from(&a.s).len(), 200);
}

#[test]
fn nodes_resubscribe_after_redis_restarts() {
    let bin = need_redis!();
    let mut redis = Redis::start(bin, &[]);
    let mut a = Node::new(&redis.url(""), "r:");
    let mut b = Node::new(&redis.url(""), "r:");
    for t in [&b"t1"[..], b"t2", b"t3"] {
        b.s.add_topic(t);
    }
    assert!(run_until(&mut [&mut a, &mut b], 10, |n| n[0].s.is_up()
        && ready(&n[1..], b"t3")));
    a.s.publish(b"t1", b"before", Kind::Text, Instant::now());
    assert!(run_until(&mut [&mut a, &mut b], 10, |n| n[1]
        .delivered
        .len()
        == 1));

    redis.stop();
    assert!(
        run_until(&mut [&mut a, &mut b], 10, |n| n.iter().all(|n| n
            .s
            .link_state(Link::Sub)
            != LinkState::Up
            && n.s.link_state(Link::Pub) != LinkState::Up)),
        "links still up after the server died"
    );
    assert!(!b.s.is_subscribed(b"t1"));
    // Publishes while Redis is away are dropped and counted, not queued for later.
    for i in 0..10 {
        a.s.publish(
            b"t1",
            format!("lost{i}").as_bytes(),
            Kind::Text,
            Instant::now(),
        );
    }
    run_for(&mut [&mut a, &mut b], 700);
    assert_eq!(a.s.counters().not_forwarded, 10);
    let reasons = b.down_reasons(Link::Sub);
    assert!(!reasons.is_empty());
    assert!(
        reasons[0].contains("closed by the server") || reasons[0].contains("reset"),
        "{reasons:?}"
    );
    // Reconnect attempts meanwhile are refused, and keep being retried.
    assert!(b.s.counters().connects >= 4, "{:?}", b.s.counters());

    redis.restart();
    assert!(
        run_until(&mut [&mut a, &mut b], 10, |n| n[0].s.is_up()
            && [&b"t1"[..], b"t2", b"t3"]
                .iter()
                .all(|t| n[1].s.is_subscribed(t))),
        "not back: {:?} {:?}",
        a.s,
        b.s
    );
    for t in [&b"t1"[..], b"t2", b"t3"] {
        a.s.publish(t, b"after", Kind::Text, Instant::now());
    }
    assert!(run_until(&mut [&mut a, &mut b], 10, |n| n[1]
        .delivered
        .len()
        == 4));
    run_for(&mut [&mut a, &mut b], 200);
    let got: Vec<(&[u8], &[u8])> = b
        .delivered
        .iter()
        .map(|d| (d.topic.as_slice(), d.payload.as_slice()))
        .collect();
    assert_eq!(
        got,
        vec![
            (&b"t1"[..], &b"before"[..]),
            (b"t1", b"after"),
            (b"t2", b"after"),
            (b"t3", b"after")
        ]
    );
    assert!(b.s.counters().link_ups >= 4);
    assert_eq!(b.s.counters().protocol_errors, 0);
}

#[test]
fn a_password_is_sent_and_a_wrong_one_is_a_clear_status() {
    let bin = need_redis!();
    let redis = Redis::start(bin, &["--requirepass", "s3cret"]);
    let mut a = Node::new(&redis.url(":s3cret@"), "");
    let mut b = Node::new(&format!("{}/0", redis.url(":s3cret@")), "");
    let mut wrong = Node::new(&redis.url(":nope@"), "");
    let mut none = Node::new(&redis.url(""), "");
    b.s.add_topic(b"t");
    assert!(run_until(
        &mut [&mut a, &mut b, &mut wrong, &mut none],
        10,
        |n| {
            n[0].s.is_up()
                && ready(&n[1..2], b"t")
                && !n[2].down_reasons(Link::Pub).is_empty()
                && !n[3].down_reasons(Link::Pub).is_empty()
        }
    ));
    a.s.publish(b"t", b"authenticated", Kind::Text, Instant::now());
    assert!(run_until(&mut [&mut a, &mut b], 10, |n| n[1]
        .delivered
        .len()
        == 1));

    let reason = &wrong.down_reasons(Link::Pub)[0];
    assert!(reason.starts_with("AUTH failed: WRONGPASS"), "{reason}");
    assert_eq!(
        none.down_reasons(Link::Sub)[0],
        "PING failed: NOAUTH Authentication required."
    );
    assert!(!wrong.s.is_up() && !none.s.is_up());
    // A refused node keeps retrying (with backoff), and reports each refusal.
    run_for(&mut [&mut wrong], 500);
    assert!(wrong.down_reasons(Link::Sub).len() >= 2);
    assert!(wrong.delivered.is_empty());
}

#[test]
fn an_acl_user_authenticates_and_its_channel_permissions_are_reported() {
    let bin = need_redis!();
    let redis = Redis::start(bin, &["--requirepass", "admin"]);
    let r = command(
        redis.port,
        &[
            &[b"AUTH", b"admin"],
            &[
                b"ACL",
                b"SETUSER",
                b"alice",
                b"on",
                b">p@ss:w/rd",
                b"~*",
                b"resetchannels",
                b"&app:*",
                b"+@all",
            ],
        ],
    )
    .unwrap();
    assert_eq!(r, vec![Value::Simple(b"OK".to_vec()); 2]);
    let alice = |prefix| Node::new(&redis.url("alice:p%40ss%3Aw%2Frd@"), prefix);
    let mut a = alice("app:");
    let mut b = alice("app:");
    let mut outside = alice("other:");
    let mut wrong = Node::new(&redis.url("alice:pass@"), "app:");
    b.s.add_topic(b"t");
    outside.s.add_topic(b"t");
    assert!(run_until(
        &mut [&mut a, &mut b, &mut outside, &mut wrong],
        10,
        |n| n[0].s.is_up()
            && ready(&n[1..2], b"t")
            && !n[2].errors.is_empty()
            && !n[3].down_reasons(Link::Sub).is_empty()
    ));
    a.s.publish(b"t", b"as alice", Kind::Text, Instant::now());
    assert!(run_until(&mut [&mut a, &mut b], 10, |n| n[1]
        .delivered
        .len()
        == 1));
    assert_eq!(b.delivered[0].payload, b"as alice");

    // Outside its channels: SUBSCRIBE and PUBLISH are refused, the links stay up.
    assert_eq!(outside.errors[0].command, "SUBSCRIBE");
    assert!(
        outside.errors[0].message.starts_with("NOPERM"),
        "{:?}",
        outside.errors
    );
    assert!(!outside.s.is_subscribed(b"t"));
    outside.s.publish(b"t", b"nope", Kind::Text, Instant::now());
    assert!(run_until(&mut [&mut outside], 10, |n| n[0].errors.len() == 2));
    assert_eq!(outside.errors[1].command, "PUBLISH");
    assert!(outside.errors[1].message.starts_with("NOPERM"));
    assert_eq!(outside.s.counters().publish_errors, 1);
    assert!(outside.s.is_up());

    let reason = &wrong.down_reasons(Link::Sub)[0];
    assert!(reason.starts_with("AUTH failed: WRONGPASS"), "{reason}");
}
