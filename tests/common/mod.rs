//! Test harness: a manager polled on its own thread through the C API, with a handler
//! closure per event, and small blocking clients. Every wait is bounded.
#![allow(dead_code)]

use std::ffi::{CStr, CString};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wsserver::ffi::event::{wss_event, wss_event_kind};
use wsserver::ffi::mgr::*;
use wsserver::ffi::opts::wss_listen_opts;
use wsserver::ffi::result::wss_result;
use wsserver::ffi::wss_mgr;

pub const OK: wss_result = wss_result::WSS_RESULT_OK;

/// An event copied out of the manager.
#[derive(Debug, Clone)]
pub struct Ev {
    pub kind: u32,
    pub flags: u32,
    pub conn: u64,
    pub parent: u64,
    pub code: i32,
    pub data: Vec<u8>,
    pub meta: Vec<u8>,
}

impl Ev {
    pub fn is(&self, k: wss_event_kind) -> bool {
        self.kind == k as u32
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

fn copy(e: &wss_event) -> Ev {
    let view = |s: &wsserver::ffi::event::wss_str| {
        unsafe { std::slice::from_raw_parts(s.ptr, s.len) }.to_vec()
    };
    Ev {
        kind: e.kind,
        flags: e.flags,
        conn: e.conn,
        parent: e.parent,
        code: e.code,
        data: view(&e.data),
        meta: view(&e.meta),
    }
}

/// What a handler gets: the manager (on its polling thread) and the listener id.
pub struct Ctx {
    pub mgr: *mut wss_mgr,
    pub listener: u64,
}

impl Ctx {
    pub fn last_error(&self) -> String {
        unsafe { CStr::from_ptr(wss_mgr_last_error(self.mgr)) }
            .to_string_lossy()
            .into_owned()
    }
}

/// Zeroed listen options with struct_size set.
pub fn listen_opts() -> wss_listen_opts {
    let mut o: wss_listen_opts = unsafe { std::mem::zeroed() };
    o.struct_size = std::mem::size_of::<wss_listen_opts>() as u32;
    o
}

/// A manager polled on a thread, listening on `url` (port 0).
pub struct Server {
    pub port: u16,
    pub listener: u64,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Every event seen, in order.
    pub log: Arc<Mutex<Vec<Ev>>>,
}

impl Server {
    pub fn start<F>(url: &str, opts: Option<wss_listen_opts>, mut handler: F) -> Server
    where
        F: FnMut(&mut Ctx, &Ev) + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let url = CString::new(url).unwrap();
        let (stop2, log2) = (stop.clone(), log.clone());
        // Options hold raw pointers (to strings the test owns for its whole run).
        struct SendOpts(Option<wss_listen_opts>);
        unsafe impl Send for SendOpts {}
        let opts = SendOpts(opts);
        let thread = std::thread::spawn(move || {
            let opts = opts;
            let mgr = unsafe { wss_mgr_new(std::ptr::null()) };
            assert!(!mgr.is_null());
            let mut id = 0;
            let opts_ptr = opts.0.as_ref().map_or(std::ptr::null(), |o| o as *const _);
            let r = unsafe { wss_mgr_listen(mgr, url.as_ptr(), opts_ptr, &mut id) };
            assert_eq!(r, OK, "listen failed");
            let mut port = 0;
            unsafe { wsserver::ffi::conn::wss_listener_port(mgr, id, &mut port) };
            tx.send((port, id)).unwrap();
            let mut ctx = Ctx { mgr, listener: id };
            let mut evs: Vec<wss_event> = Vec::with_capacity(64);
            while !stop2.load(Ordering::Relaxed) {
                unsafe { wss_mgr_poll(mgr, 5, std::ptr::null_mut()) };
                loop {
                    let n = unsafe {
                        wsserver::ffi::event::wss_mgr_next_events(mgr, evs.as_mut_ptr(), 64)
                    };
                    if n == 0 {
                        break;
                    }
                    unsafe { evs.set_len(n) };
                    let copied: Vec<Ev> = evs.iter().map(copy).collect();
                    for ev in &copied {
                        log2.lock().unwrap().push(ev.clone());
                        handler(&mut ctx, ev);
                    }
                    unsafe { evs.set_len(0) };
                }
            }
            unsafe { wss_mgr_free(mgr) };
        });
        let (port, listener) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server did not start");
        Server {
            port,
            listener,
            stop,
            thread: Some(thread),
            log,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s
    }

    /// Events of one kind seen so far.
    pub fn events(&self, k: wss_event_kind) -> Vec<Ev> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.is(k))
            .cloned()
            .collect()
    }

    /// Waits until `pred` holds over the log (at most 10 s).
    pub fn wait_for(&self, what: &str, pred: impl Fn(&[Ev]) -> bool) {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if pred(&self.log.lock().unwrap()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!(
            "timed out waiting for {what}; log: {:?}",
            self.log.lock().unwrap()
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if r.is_err() && !std::thread::panicking() {
                panic!("server thread panicked");
            }
        }
    }
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response from a stream; `head_request` for replies without a body.
pub fn read_response(s: &mut TcpStream, head_request: bool) -> Response {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("reading a response head");
        assert!(
            n == 1,
            "connection closed before the response head ended: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let status: u16 = head[9..12].parse().unwrap();
    let mut r = Response {
        status,
        head,
        body: Vec::new(),
    };
    if head_request || status == 204 || status == 304 || status < 200 {
        return r;
    }
    if let Some(n) = r.header("content-length") {
        let mut body = vec![0; n.parse().unwrap()];
        s.read_exact(&mut body).unwrap();
        r.body = body;
    } else if r
        .header("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"))
    {
        loop {
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                s.read_exact(&mut byte).unwrap();
                line.push(byte[0]);
            }
            let size =
                usize::from_str_radix(std::str::from_utf8(&line[..line.len() - 2]).unwrap(), 16)
                    .unwrap();
            let mut chunk = vec![0; size + 2];
            s.read_exact(&mut chunk).unwrap();
            if size == 0 {
                break;
            }
            r.body.extend_from_slice(&chunk[..size]);
        }
    } else {
        s.read_to_end(&mut r.body).unwrap();
    }
    r
}

/// Sends raw bytes and reads one response.
pub fn roundtrip(s: &mut TcpStream, request: &str) -> Response {
    s.write_all(request.as_bytes()).unwrap();
    read_response(s, request.starts_with("HEAD "))
}

/// Whether the peer closed the stream (EOF or reset) within the read timeout.
pub fn closed_by_peer(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut b = [0u8; 1024];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Replies to an HTTP event through the C API.
pub fn reply(ctx: &Ctx, conn: u64, status: u16, headers: &str, body: &[u8]) -> wss_result {
    let h = CString::new(headers).unwrap();
    unsafe {
        wsserver::ffi::http::wss_http_reply(
            ctx.mgr,
            conn,
            status,
            h.as_ptr(),
            body.as_ptr(),
            body.len(),
        )
    }
}
