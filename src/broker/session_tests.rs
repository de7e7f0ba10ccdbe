//! The session against a scripted server: what it writes is parsed as commands, and
//! replies are encoded by hand.

use super::*;
use crate::broker::resp::{encode, parse, Limits, Value};

fn t0() -> Instant {
    Instant::now()
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn bulk(b: &[u8]) -> Value {
    Value::Bulk(b.to_vec())
}

fn cfg() -> Config {
    Config {
        prefix: b"p:".to_vec(),
        ..Config::default()
    }
}

/// Takes what the session has to write on a link, as commands (lists of arguments).
fn commands(s: &mut Session, link: Link) -> Vec<Vec<Vec<u8>>> {
    let bytes = s.outgoing(link).to_vec();
    s.written(link, bytes.len());
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (v, n) = parse(&bytes[at..], &Limits::default()).unwrap().unwrap();
        at += n;
        let Value::Array(items) = v else {
            panic!("not a command: {v:?}")
        };
        out.push(
            items
                .into_iter()
                .map(|i| match i {
                    Value::Bulk(b) => b,
                    other => panic!("not a bulk string: {other:?}"),
                })
                .collect(),
        );
    }
    out
}

fn cmd(args: &[&[u8]]) -> Vec<Vec<u8>> {
    args.iter().map(|a| a.to_vec()).collect()
}

fn wire(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode(&mut out, v);
    }
    out
}

fn reply(s: &mut Session, link: Link, values: &[Value], now: Instant) {
    s.received(link, &wire(values), now);
}

fn outputs(s: &mut Session) -> Vec<Output> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

fn ok() -> Value {
    Value::Simple(b"OK".to_vec())
}

fn pong() -> Value {
    Value::Simple(b"PONG".to_vec())
}

fn confirm(kind: &[u8], channel: &[u8], n: i64) -> Value {
    Value::Array(vec![bulk(kind), bulk(channel), Value::Integer(n)])
}

fn message(channel: &[u8], payload: &[u8]) -> Value {
    Value::Array(vec![bulk(b"message"), bulk(channel), bulk(payload)])
}

fn up_status(link: Link) -> Output {
    Output::Status(Status {
        link,
        state: LinkState::Up,
        reason: String::new(),
        retry_in: None,
    })
}

/// Connects both links of a session without credentials and answers their PINGs.
fn bring_up(s: &mut Session, now: Instant) {
    for link in Link::ALL {
        s.connected(link, now);
        assert_eq!(commands(s, link), vec![cmd(&[b"PING"])]);
        reply(s, link, &[pong()], now);
        assert_eq!(s.link_state(link), LinkState::Up);
    }
}

/// Confirms every SUBSCRIBE/UNSUBSCRIBE waiting on the sub link, returning the commands.
fn confirm_all(s: &mut Session, now: Instant) -> Vec<Vec<Vec<u8>>> {
    let cmds = commands(s, Link::Sub);
    for c in &cmds {
        let kind = c[0].to_ascii_lowercase();
        let replies: Vec<Value> = c[1..].iter().map(|ch| confirm(&kind, ch, 1)).collect();
        reply(s, Link::Sub, &replies, now);
    }
    cmds
}

/// The PUBLISH commands a session wrote, as (channel, envelope).
fn published(s: &mut Session) -> Vec<(Vec<u8>, Vec<u8>)> {
    commands(s, Link::Pub)
        .into_iter()
        .map(|c| {
            assert_eq!(c[0], b"PUBLISH");
            assert_eq!(c.len(), 3);
            (c[1].clone(), c[2].clone())
        })
        .collect()
}

fn down_reason(outs: &[Output], link: Link) -> (String, Duration) {
    outs.iter()
        .find_map(|o| match o {
            Output::Status(st) if st.link == link && st.state == LinkState::Down => {
                Some((st.reason.clone(), st.retry_in.unwrap()))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no down status for {link:?} in {outs:?}"))
}

#[test]
fn a_new_session_asks_for_both_connections() {
    let now = t0();
    let mut s = Session::new(cfg(), now);
    assert_eq!(
        outputs(&mut s),
        vec![Output::Connect(Link::Sub), Output::Connect(Link::Pub)]
    );
    assert_eq!(s.link_state(Link::Sub), LinkState::Connecting);
    assert_eq!(s.counters().connects, 2);
    assert!(!s.is_up());
    bring_up(&mut s, now);
    assert!(s.is_up());
    assert_eq!(
        outputs(&mut s),
        vec![up_status(Link::Sub), up_status(Link::Pub)]
    );
}

#[test]
fn handshake_with_an_acl_user_and_a_database() {
    let now = t0();
    let url = RedisUrl::parse("redis://alice:pw%20x@h/3").unwrap();
    let mut s = Session::new(Config::from_url(&url), now);
    outputs(&mut s);
    s.connected(Link::Sub, now);
    assert_eq!(
        commands(&mut s, Link::Sub),
        vec![cmd(&[b"AUTH", b"alice", b"pw x"]), cmd(&[b"SELECT", b"3"])]
    );
    reply(&mut s, Link::Sub, &[ok()], now);
    assert_eq!(s.link_state(Link::Sub), LinkState::Handshake);
    reply(&mut s, Link::Sub, &[ok()], now);
    assert_eq!(s.link_state(Link::Sub), LinkState::Up);
    assert_eq!(outputs(&mut s), vec![up_status(Link::Sub)]);
}

#[test]
fn handshake_with_a_legacy_password() {
    let now = t0();
    let url = RedisUrl::parse("redis://:secret@h").unwrap();
    let mut s = Session::new(Config::from_url(&url), now);
    s.connected(Link::Pub, now);
    assert_eq!(
        commands(&mut s, Link::Pub),
        vec![cmd(&[b"AUTH", b"secret"])]
    );
    reply(&mut s, Link::Pub, &[ok()], now);
    assert_eq!(s.link_state(Link::Pub), LinkState::Up);
}

#[test]
fn a_wrong_password_takes_the_link_down_with_the_servers_words() {
    let now = t0();
    let mut c = cfg();
    c.password = Some(b"nope".to_vec());
    let mut s = Session::new(c, now);
    outputs(&mut s);
    s.connected(Link::Sub, now);
    commands(&mut s, Link::Sub);
    let msg = b"WRONGPASS invalid username-password pair or user is disabled.";
    reply(&mut s, Link::Sub, &[Value::Error(msg.to_vec())], now);
    let outs = outputs(&mut s);
    assert_eq!(outs[0], Output::Close(Link::Sub));
    let (reason, retry) = down_reason(&outs, Link::Sub);
    assert_eq!(
        reason,
        "AUTH failed: WRONGPASS invalid username-password pair or user is disabled."
    );
    assert!(retry >= ms(100) && retry <= ms(200), "{retry:?}");
    assert_eq!(s.link_state(Link::Sub), LinkState::Down);
    assert_eq!(s.counters().server_errors, 1);
    // No reconnect before the delay, one at it.
    s.tick(now + retry - ms(1));
    assert!(outputs(&mut s).is_empty());
    assert_eq!(s.next_deadline(), Some(now + retry.min(ms(5000))));
    s.tick(now + retry);
    assert_eq!(outputs(&mut s), vec![Output::Connect(Link::Sub)]);
    assert_eq!(s.link_state(Link::Sub), LinkState::Connecting);
}

#[test]
fn a_missing_password_is_a_clear_handshake_failure() {
    let now = t0();
    let mut s = Session::new(cfg(), now);
    outputs(&mut s);
    s.connected(Link::Pub, now);
    commands(&mut s, Link::Pub);
    reply(
        &mut s,
        Link::Pub,
        &[Value::Error(b"NOAUTH Authentication required.".to_vec())],
        now,
    );
    let (reason, _) = down_reason(&outputs(&mut s), Link::Pub);
    assert_eq!(reason, "PING failed: NOAUTH Authentication required.");
}

#[test]
fn subscriptions_are_batched_and_netted() {
    let now = t0();
    let mut s = Session::new(cfg(), now);
    for t in [&b"c"[..], b"a", b"b"] {
        s.add_topic(t);
    }
    // Nothing to send before the link is up.
    assert!(!s.wants_write(Link::Sub));
    bring_up(&mut s, now);
    let cmds = confirm_all(&mut s, now);
    assert_eq!(cmds, vec![cmd(&[b"SUBSCRIBE", b"p:a", b"p:b", b"p:c"])]);
    assert!(s.is_subscribed(b"a") && s.is_subscribed(b"c"));
    s.add_topic(b"d");
    s.remove_topic(b"a");
    s.add_topic(b"e");
    s.remove_topic(b"e");
    s.add_topic(b"b"); // already there
    assert!(s.wants_write(Link::Sub));
    let cmds = confirm_all(&mut s, now);
    assert_eq!(
        cmds,
        vec![cmd(&[b"UNSUBSCRIBE", b"p:a"]), cmd(&[b"SUBSCRIBE", b"p:d"])]
    );
    assert!(!s.is_subscribed(b"a") && s.is_subscribed(b"d"));
    assert_eq!(s.topic_count(), 3);
    // Removed and re-added within one batch: nothing to say.
    s.remove_topic(b"b");
    s.add_topic(b"b");
    assert!(commands(&mut s, Link::Sub).is_empty());
    assert!(outputs(&mut s)
        .iter()
        .all(|o| matches!(o, Output::Status(_) | Output::Connect(_))));
}

#[test]
fn large_subscription_sets_go_in_several_commands() {
    let now = t0();
    let mut s = Session::new(cfg(), now);
    for i in 0..600 {
        s.add_topic(format!("t{i:04}").as_bytes());
    }
    bring_up(&mut s, now);
    let cmds = confirm_all(&mut s, now);
    assert_eq!(
        cmds.iter().map(|c| c.len() - 1).collect::<Vec<_>>(),
        vec![256, 256, 88]
    );
    assert!((0..600).all(|i| s.is_subscribed(format!("t{i:04}").as_bytes())));
    // Long topics: a batch stays under 64 KiB of channel names.
    let mut s = Session::new(cfg(), now);
    for i in 0..10 {
        s.add_topic(&vec![b'a' + i; 20_000]);
    }
    bring_up(&mut s, now);
    let cmds = confirm_all(&mut s, now);
    assert!(cmds.len() >= 4, "{}", cmds.len());
    assert_eq!(cmds.iter().map(|c| c.len() - 1).sum::<usize>(), 10);
}

#[test]
fn everything_is_subscribed_again_after_a_reconnect() {
    let now = t0();
    let mut s = Session::new(cfg(), now);
    bring_up(&mut s, now);
    s.add_topic(b"x");
    s.add_topic(b"y");
    confirm_all(&mut s, now);
    outputs(&mut s);
    s.disconnected(Link::Sub, "connection reset by peer", now);
    let (reason, retry) = down_reason(&outputs(&mut s), Link::Sub);
    assert_eq!(reason, "connection reset by peer");
    assert!(!s.is_subscribed(b"x"));
    // Changes while down are remembered, not sent.
    s.remove_topic(b"y");
    s.add_topic(b"z");
    s.tick(now + retry);
    assert_eq!(outputs(&mut s), vec![Output::Connect(Link::Sub)]);
    let later = now + retry;
    s.connected(Link::Sub, later);
    assert_eq!(commands(&mut s, Link::Sub), vec![cmd(&[b"PING"])]);
    reply(&mut s, Link::Sub, &[pong()], later);
    let cmds = confirm_all(&mut s, later);
    assert_eq!(cmds, vec![cmd(&[b"SUBSCRIBE", b"p:x", b"p:z"])]);
    assert!(s.is_subscribed(b"x") && s.is_subscribed(b"z"));
    assert_eq!(s.counters().link_ups, 3);
    assert_eq!(s.counters().link_downs, 1);
}

#[test]
fn own_messages_are_dropped_and_others_delivered_once() {
    let now = t0();
    let mut a = Session::new(cfg(), now);
    let mut b = Session::new(cfg(), now);
    assert_ne!(a.node_id(), b.node_id());
    for s in [&mut a, &mut b] {
        bring_up(s, now);
        s.add_topic(b"room");
        confirm_all(s, now);
        outputs(s);
    }
    assert_eq!(
        a.publish(b"room", b"hi \xe2\x9c\x93", Kind::Text, now),
        Forward::Sent
    );
    assert_eq!(
        a.publish(b"room", &[0, 255, 13, 10], Kind::Binary, now),
        Forward::Sent
    );
    let pubs = published(&mut a);
    assert_eq!(pubs.len(), 2);
    assert_eq!(pubs[0].0, b"p:room");
    assert_eq!(a.counters().published, 2);
    for (channel, env) in &pubs {
        // Redis sends it to both nodes.
        reply(&mut a, Link::Sub, &[message(channel, env)], now);
        reply(&mut b, Link::Sub, &[message(channel, env)], now);
    }
    assert!(outputs(&mut a).is_empty());
    assert_eq!(a.counters().own_suppressed, 2);
    assert_eq!(a.counters().delivered, 0);
    assert_eq!(
        outputs(&mut b),
        vec![
            Output::Deliver(Delivery {
                topic: b"room".to_vec(),
                payload: b"hi \xe2\x9c\x93".to_vec(),
                kind: Kind::Text,
                origin: Some(a.node_id()),
            }),
            Output::Deliver(Delivery {
                topic: b"room".to_vec(),
                payload: vec![0, 255, 13, 10],
                kind: Kind::Binary,
                origin: Some(a.node_id()),
            }),
        ]
    );
    assert_eq!(b.counters().delivered, 2);
    assert_eq!(b.counters().received, 2);
    // The acknowledgements (number of receivers).
    reply(
        &mut a,
        Link::Pub,
        &[Value::Integer(2), Value::Integer(2)],
        now,
    );
    assert_eq!(a.counters().publish_confirmed, 2);
    assert!(outputs(&mut a).is_empty());
}

#[test]
fn a_message_split_at_every_point_is_delivered_once() {
    let now = t0();
    let mut a = Session::new(cfg(), now);
    let node = a.node_id();
    let env = envelope::encode(&NodeId([7; 16]), Kind::Binary, b"\r\n$5\r\n*1\r\n");
    let frame = wire(&[message(b"p:t", &env), pong()]);
    bring_up(&mut a, now);
    a.add_topic(b"t");
    confirm_all(&mut a, now);
    for cut in 0..=frame.len() {
        outputs(&mut a);
        // The PONG answers a keepalive PING.
        a.tick(now + ms(15_000) + ms(cut as u64));
        assert_eq!(commands(&mut a, Link::Sub), vec![cmd(&[b"PING"])]);
        a.received(Link::Sub, &frame[..cut], now);
        a.received(Link::Sub, &frame[cut..], now);
        let outs = outputs(&mut a);
        assert_eq!(outs.len(), 1, "cut {cut}: {outs:?}");
        assert!(matches!(&outs[0], Output::Deliver(d) if d.payload == b"\r\n$5\r\n*1\r\n"));
        assert_eq!(a.link_state(Link::Sub), LinkState::Up);
    }
    assert_eq!(a.node_id(), node);
    assert_eq!(a.counters().delivered, frame.len() as u64 + 1);
}

#[test]
fn resp3_push_messages_and_confirmations_work_too() {
    let now = t0();
    let mut s = Session::new(cfg(), now);
    bring_up(&mut s, now);
    s.add_topic(b"t");
    commands(&mut s, Link::Sub);
    let push = |items: Vec<Value>| Value::Push(items);
    reply(
        &mut s,
        Link::Sub,
        &[
            push(vec![bulk(b"subscribe"), bulk(b"p:t"), Value::Integer(1)]),
            push(vec![bulk(b"message"), bulk(b"p:t"), bulk(b"plain")]),
            push(vec![bulk(b"invalidate"), Value::Null]),
        ],
        now,
    );
    assert!(s.is_subscribed(b"t"));
    // A push on the pub link is out-of-band: ignored, not taken as a reply.
    s.publish(b"t", b"x", Kind::Text, now);
    commands(&mut s, Link::Pub);
    reply(
        &mut s,
        Link::Pub,
        &[
            push(vec![bulk(b"invalidate"), Value::Null]),
            Value::Integer(1),
        ],
        now,
    );
    assert_eq!(s.counters().publish_confirmed, 1);
    let outs = outputs(&mut s);
    assert!(outs
        .iter()
        .any(|o| matches!(o, Output::Deliver(d) if d.payload == b"plain")));
    assert_eq!(s.link_state(Link::Pub), LinkState::Up);
}

#[test]
fn publishes_are_held_while_connecting_then_sent() {
    let now = t0();
    let mut s = Session::new(cfg(), now);
    assert_eq!(s.publish(b"t", b"1", Kind::Text, now), Forward::Queued);
    s.connected(Link::Pub, now);
    assert_eq!(s.publish(b"t", b"2", Kind::Text, now), Forward::Queued);
    assert_eq!(commands(&mut s, Link::Pub), vec![cmd(&[b"PING"])]);
    reply(&mut s, Link::Pub, &[pong()], now);
    let pubs = published(&mut s);
    let payloads: Vec<&[u8]> = pubs.iter().map(|p| &p.1[HEADER_LEN..]).collect();
    assert_eq!(payloads, vec![&b"1"[..], b"2"]);
    assert_eq!(s.counters().published, 2);
    assert_eq!(s.counters().not_forwarded, 0);
    reply(
        &mut s,
        Link::Pub,
        &[Value::Integer(0), Value::Integer(0)],
        now,
    );
    assert_eq!(s.counters().publish_confirmed, 2);
}

#[test]
fn publishes_while_down_are_dropped_and_counted() {
    let now = t0();
    let mut c = cfg();
    c.connect_buffer = 200;
    let mut s = Session::new(c, now);
    // Held while connecting, up to the buffer's size.
    assert_eq!(
        s.publish(b"t", &[1; 100], Kind::Binary, now),
        Forward::Queued
    );
    assert_eq!(
        s.publish(b"t", &[1; 100], Kind::Binary, now),
        Forward::Dropped(DropReason::BufferFull)
    );
    // The attempt fails: what was held is not forwarded either.
    s.disconnected(Link::Pub, "connection refused", now);
    assert_eq!(s.counters().not_forwarded, 2);
    assert_eq!(
        s.publish(b"t", b"x", Kind::Text, now),
        Forward::Dropped(DropReason::LinkDown)
    );
    assert_eq!(s.counters().not_forwarded, 3);
    assert_eq!(s.counters().published, 0);
}

#[test]
fn publishes_in_flight_when_the_link_breaks_are_unconfirmed() {
    let now = t0();
    let mut s = Session::new(cfg(), now);
    bring_up(&mut s, now);
    for _ in 0..3 {
        s.publish(b"t", b"x", Kind::Text, now);
    }
    published(&mut s);
    reply(&mut s, Link::Pub, &[Value::Integer(1)], now);
    s.disconnected(Link::Pub, "broken pipe", now);
    assert_eq!(s.counters().unconfirmed, 2);
    assert_eq!(s.counters().publish_confirmed, 1);
}

#[test]
fn the_send_buffer_is_bounded() {
    let now = t0();
    let mut c = cfg();
    c.max_write_buffer = 1000;
    let mut s = Session::new(c, now);
    bring_up(&mut s, now);
    // One larger than the buffer goes through when nothing waits.
    assert_eq!(
        s.publish(b"t", &[0; 2000], Kind::Binary, now),
        Forward::Sent
    );
    assert_eq!(
        s.publish(b"t", b"x", Kind::Binary, now),
        Forward::Dropped(DropReason::BufferFull)
    );
    let n = s.outgoing(Link::Pub).len();
    s.written(Link::Pub, n);
    let mut sent = 0;
    while s.publish(b"t", &[0; 100], Kind::Binary, now) == Forward::Sent {
        sent += 1;
    }
    // Each command: *3, PUBLISH, "p:t", the envelope and its 100 bytes.
    let len = resp::command_len(&[7, 3, HEADER_LEN + 100]);
    assert_eq!(sent, 1000 / len);
    assert!(s.outgoing(Link::Pub).len() <= 1000);
    // A partial write keeps the rest, in order.
    let before = s.outgoing(Link::Pub).to_vec();
    s.written(Link::Pub, 10);
    assert_eq!(s.outgoing(Link::Pub), &before[10..]);
}

#[test]
fn a_publish_no_node_could_receive_is_refused() {
    let now = t0();
    let mut c = cfg();
    c.limits.max_bulk_len = 1000;
    let mut s = Session::new(c, now);
    bring_up(&mut s, now);
    assert_eq!(
        s.publish(b"t", &[0; 1000 - HEADER_LEN], Kind::Binary, now),
        Forward::Sent
    );
    assert_eq!(
        s.publish(b"t", &[0; 1001 - HEADER_LEN], Kind::Binary, now),
        Forward::Dropped(DropReason::TooLarge)
    );
}

#[test]
fn replies_are_matched_in_order_and_errors_surface() {
    let now = t0();
    let mut s = Session::new(cfg(), now);
    bring_up(&mut s, now);
    outputs(&mut s);
    for _ in 0..3 {
        s.publish(b"t", b"x", Kind::Text, now);
    }
    published(&mut s);
    let noperm = b"NOPERM User alice has no permissions to access the 'p:t' channel";
    reply(
        &mut s,
        Link::Pub,
        &[
            Value::Integer(1),
            Value::Error(noperm.to_vec()),
            Value::Integer(0),
        ],
        now,
    );
    assert_eq!(
        outputs(&mut s),
        vec![Output::ServerError(ServerError {
            link: Link::Pub,
            command: "PUBLISH",
            message: String::from_utf8(noperm.to_vec()).unwrap(),
        })]
    );
    let c = s.counters();
    assert_eq!(
        (c.publish_confirmed, c.publish_errors, c.server_errors),
        (2, 1, 1)
    );
    assert_eq!(s.link_state(Link::Pub), LinkState::Up);
}

#[test]
fn a_refused_subscribe_is_reported_and_the_link_stays_up() {
    let now = t0();
    let mut s = Session::new(cfg(), now);
    bring_up(&mut s, now);
    outputs(&mut s);
    s.add_topic(b"a");
    s.add_topic(b"b");
    assert_eq!(
        commands(&mut s, Link::Sub),
        vec![cmd(&[b"SUBSCRIBE", b"p:a", b"p:b"])]
    );
    reply(
        &mut s,
        Link::Sub,
        &[Value::Error(b"NOPERM no permissions".to_vec())],
        now,
    );
    let outs = outputs(&mut s);
    assert!(matches!(&outs[..], [Output::ServerError(e)] if e.command == "SUBSCRIBE"));
    assert!(!s.is_subscribed(b"a"));
    assert_eq!(s.link_state(Link::Sub), LinkState::Up);
    // Re-adding it later tries again.
    s.remove_topic(b"a");
    s.add_topic(b"a");
    assert_eq!(
        commands(&mut s, Link::Sub),
        vec![cmd(&[b"SUBSCRIBE", b"p:a"])]
    );
}

#[test]
fn protocol_violations_reset_the_link() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("a reply with no command waiting", wire(&[ok()])),
        ("malformed RESP", b"?garbage\r\n".to_vec()),
        ("unexpected reply to PUBLISH", wire(&[ok()])),
        (
            "expected the subscribe confirmation",
            wire(&[confirm(b"subscribe", b"p:other", 1)]),
        ),
        (
            "a message of 2 elements",
            wire(&[Value::Array(vec![bulk(b"message"), bulk(b"p:t")])]),
        ),
        ("RESP over a limit", [b"$999999999\r\n".as_slice()].concat()),
    ];
    for (i, (why, bytes)) in cases.into_iter().enumerate() {
        let now = t0();
        let mut s = Session::new(cfg(), now);
        bring_up(&mut s, now);
        let link = match i {
            2 => {
                s.publish(b"t", b"x", Kind::Text, now);
                Link::Pub
            }
            3 => {
                s.add_topic(b"t");
                Link::Sub
            }
            _ => Link::Sub,
        };
        commands(&mut s, link);
        outputs(&mut s);
        s.received(link, &bytes, now);
        let outs = outputs(&mut s);
        assert_eq!(outs[0], Output::Close(link), "{why}");
        let (reason, _) = down_reason(&outs, link);
        assert!(reason.starts_with("protocol error: "), "{reason}");
        assert!(reason.contains(why), "{why}: {reason}");
        assert_eq!(s.counters().protocol_errors, 1);
        assert_eq!(s.link_state(link), LinkState::Down);
        // The rest of the bytes of a dead connection are ignored.
        s.received(link, &wire(&[ok(), ok()]), now);
        assert!(outputs(&mut s).is_empty());
        // So is a late report of its closure.
        s.disconnected(link, "closed", now);
        assert!(outputs(&mut s).is_empty());
    }
}

#[test]
fn silence_brings_a_ping_and_no_answer_a_reset() {
    let now = t0();
    let mut s = Session::new(cfg(), now);
    bring_up(&mut s, now);
    s.add_topic(b"t");
    confirm_all(&mut s, now);
    outputs(&mut s);
    assert_eq!(s.next_deadline(), Some(now + ms(15_000)));
    s.tick(now + ms(14_999));
    assert!(!s.wants_write(Link::Sub));
    let t1 = now + ms(15_000);
    s.tick(t1);
    assert_eq!(commands(&mut s, Link::Sub), vec![cmd(&[b"PING"])]);
    assert_eq!(commands(&mut s, Link::Pub), vec![cmd(&[b"PING"])]);
    // The sub link is in subscribe mode: its pong is an array.
    reply(
        &mut s,
        Link::Sub,
        &[Value::Array(vec![bulk(b"pong"), bulk(b"")])],
        t1,
    );
    assert_eq!(s.link_state(Link::Sub), LinkState::Up);
    assert_eq!(s.next_deadline(), Some(t1 + ms(10_000)));
    s.tick(t1 + ms(10_000));
    let outs = outputs(&mut s);
    assert_eq!(outs[0], Output::Close(Link::Pub));
    let (reason, _) = down_reason(&outs, Link::Pub);
    assert_eq!(reason, "no reply within 10s");
    assert_eq!(s.link_state(Link::Sub), LinkState::Up);
}

#[test]
fn a_connection_that_never_comes_times_out() {
    let now = t0();
    let mut s = Session::new(cfg(), now);
    outputs(&mut s);
    assert_eq!(s.next_deadline(), Some(now + ms(5000)));
    s.tick(now + ms(5000));
    let outs = outputs(&mut s);
    assert_eq!(outs[0], Output::Close(Link::Sub));
    assert_eq!(
        down_reason(&outs, Link::Sub).0,
        "connect timed out after 5s"
    );
    // A late "connected" for the abandoned attempt is ignored.
    s.connected(Link::Sub, now + ms(5001));
    assert_eq!(s.link_state(Link::Sub), LinkState::Down);
    assert!(!s.wants_write(Link::Sub));
}

#[test]
fn backoff_doubles_up_to_its_cap_with_jitter() {
    let (min, max) = (ms(200), ms(10_000));
    for failures in 1..64 {
        let full = if failures >= 7 {
            max
        } else {
            min * (1 << (failures - 1))
        };
        for rand in [0, 1, 12345, u64::MAX / 3, u64::MAX] {
            let d = backoff_delay(min, max, failures, rand);
            assert!(d >= full / 2 && d <= full, "{failures} {rand}: {d:?}");
        }
    }
    assert_eq!(backoff_delay(min, max, 1, 0), ms(100));
    let capped = backoff_delay(min, max, u32::MAX, u64::MAX);
    assert!(capped >= max / 2 && capped <= max, "{capped:?}");
    assert_eq!(backoff_delay(Duration::ZERO, max, 5, 77), Duration::ZERO);
    // Through a session: consecutive failures spread out and stay under the cap; a
    // completed handshake starts over.
    let now = t0();
    let mut s = Session::new(cfg(), now);
    let mut t = now;
    let mut delays = Vec::new();
    for _ in 0..12 {
        s.disconnected(Link::Sub, "refused", t);
        let (_, retry) = down_reason(&outputs(&mut s), Link::Sub);
        delays.push(retry);
        t += retry;
        s.tick(t);
    }
    for (i, d) in delays.iter().enumerate() {
        let full = (ms(200) * (1 << i.min(6))).min(max);
        assert!(*d >= full / 2 && *d <= full, "{i}: {d:?}");
    }
    let distinct: HashSet<_> = delays.iter().skip(6).collect();
    assert!(distinct.len() > 1, "no jitter: {delays:?}");
    outputs(&mut s);
    s.connected(Link::Sub, t);
    commands(&mut s, Link::Sub);
    reply(&mut s, Link::Sub, &[pong()], t);
    s.disconnected(Link::Sub, "refused", t);
    let (_, retry) = down_reason(&outputs(&mut s), Link::Sub);
    assert!(retry <= ms(200), "{retry:?}");
}

#[test]
fn messages_for_topics_left_are_dropped() {
    let now = t0();
    let mut s = Session::new(cfg(), now);
    bring_up(&mut s, now);
    s.add_topic(b"t");
    confirm_all(&mut s, now);
    s.remove_topic(b"t");
    // Still in flight before the UNSUBSCRIBE took effect.
    reply(&mut s, Link::Sub, &[message(b"p:t", b"late")], now);
    reply(&mut s, Link::Sub, &[message(b"elsewhere", b"x")], now);
    assert_eq!(s.counters().unwanted, 2);
    assert!(!outputs(&mut s)
        .iter()
        .any(|o| matches!(o, Output::Deliver(_))));
}

#[test]
fn foreign_and_bad_envelopes() {
    let now = t0();
    let other = NodeId([9; 16]);
    let mut bad_text = envelope::encode(&other, Kind::Text, b"\xff\xfe");
    let mut newer = envelope::encode(&other, Kind::Text, b"x");
    newer[3] = 2;
    let cases: Vec<(Vec<u8>, Option<Kind>)> = vec![
        (b"hello from redis-cli".to_vec(), Some(Kind::Text)),
        (vec![0x80, 1, 2], Some(Kind::Binary)),
        (std::mem::take(&mut bad_text), None),
        (newer, None),
        (b"\xffWS".to_vec(), None),
    ];
    for accept in [true, false] {
        let mut c = cfg();
        c.accept_foreign = accept;
        let mut s = Session::new(c, now);
        bring_up(&mut s, now);
        s.add_topic(b"t");
        confirm_all(&mut s, now);
        outputs(&mut s);
        for (payload, kind) in &cases {
            reply(&mut s, Link::Sub, &[message(b"p:t", payload)], now);
            let outs = outputs(&mut s);
            match (kind, accept) {
                (Some(k), true) => assert_eq!(
                    outs,
                    vec![Output::Deliver(Delivery {
                        topic: b"t".to_vec(),
                        payload: payload.clone(),
                        kind: *k,
                        origin: None,
                    })]
                ),
                _ => assert!(outs.is_empty(), "{payload:?}: {outs:?}"),
            }
        }
        assert_eq!(s.counters().foreign, 2);
        assert_eq!(s.counters().bad_envelope, 3);
        assert_eq!(s.counters().delivered, if accept { 2 } else { 0 });
    }
}

#[test]
fn a_bad_database_is_a_handshake_failure() {
    let now = t0();
    let mut c = cfg();
    c.db = Some(99);
    let mut s = Session::new(c, now);
    outputs(&mut s);
    s.connected(Link::Pub, now);
    assert_eq!(commands(&mut s, Link::Pub), vec![cmd(&[b"SELECT", b"99"])]);
    reply(
        &mut s,
        Link::Pub,
        &[Value::Error(b"ERR DB index is out of range".to_vec())],
        now,
    );
    let outs = outputs(&mut s);
    assert_eq!(
        down_reason(&outs, Link::Pub).0,
        "SELECT 99 failed: ERR DB index is out of range"
    );
}

#[test]
fn long_server_messages_are_cut() {
    let now = t0();
    let mut c = cfg();
    c.password = Some(b"x".to_vec());
    let mut s = Session::new(c, now);
    outputs(&mut s);
    s.connected(Link::Sub, now);
    reply(&mut s, Link::Sub, &[Value::Error(vec![b'E'; 10_000])], now);
    let (reason, _) = down_reason(&outputs(&mut s), Link::Sub);
    assert!(reason.len() < 300, "{}", reason.len());
}

#[test]
fn debug_output_hides_the_password() {
    let mut c = cfg();
    c.password = Some(b"hunter2".to_vec());
    let s = Session::new(c, t0());
    assert!(!format!("{:?}", s.config()).contains("hunter2"));
}
