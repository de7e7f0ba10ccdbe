//! The one way tests run a manager: [`Loop`], a manager polled through the C API on its
//! own thread. Every event is copied into a log and handed to the test's handler; the
//! test also sends the loop closures to run between polls (listen, connect, send, close
//! at chosen moments). Every wait is bounded by [`WAIT`].

use std::ffi::{c_char, CStr, CString};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wsserver::ffi::event::{wss_event, wss_event_kind, wss_mgr_next_events, wss_str};
use wsserver::ffi::mgr::*;
use wsserver::ffi::opts::{wss_connect_opts, wss_listen_opts};
use wsserver::ffi::result::wss_result;
use wsserver::ffi::wss_mgr;

pub const OK: wss_result = wss_result::WSS_RESULT_OK;

/// Generous bound on every wait for the server.
pub const WAIT: Duration = Duration::from_secs(10);

/// A C string that lives as long as the test process (option structs point at these).
pub fn cs(s: &str) -> *const c_char {
    CString::new(s).unwrap().into_raw()
}

/// Zeroed listen options with struct_size set.
pub fn listen_opts() -> wss_listen_opts {
    let mut o: wss_listen_opts = unsafe { std::mem::zeroed() };
    o.struct_size = std::mem::size_of::<wss_listen_opts>() as u32;
    o
}

/// Zeroed connect options with struct_size set.
pub fn connect_opts() -> wss_connect_opts {
    let mut o: wss_connect_opts = unsafe { std::mem::zeroed() };
    o.struct_size = std::mem::size_of::<wss_connect_opts>() as u32;
    o
}

/// Event flags (the C enum `wss_flag`).
pub const FLAG_TEXT: u32 = 1;
pub const FLAG_BINARY: u32 = 2;
pub const FLAG_FIN: u32 = 4;
pub const FLAG_FIRST: u32 = 8;
pub const FLAG_BY_PEER: u32 = 16;

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
    /// Copies an event whose views are still valid (before the next drain or poll).
    pub fn copy(e: &wss_event) -> Ev {
        let view = |s: &wss_str| unsafe { std::slice::from_raw_parts(s.ptr, s.len) }.to_vec();
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

    pub fn is(&self, k: wss_event_kind) -> bool {
        self.kind == k as u32
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }
}

/// One line per event, payloads cut short.
pub fn summary(log: &[Ev]) -> String {
    log.iter()
        .map(|e| {
            format!(
                "  kind={} flags={} conn={} parent={} code={} len={} data={:?}",
                e.kind,
                e.flags,
                e.conn,
                e.parent,
                e.code,
                e.data.len(),
                String::from_utf8_lossy(&e.data[..e.data.len().min(60)])
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a handler (or a closure sent with [`Loop::call`]) gets: the manager, on its
/// polling thread, and the last listener opened.
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

/// Moves raw-pointer-holding values (option structs pointing at strings the test keeps
/// alive) into a closure for the polling thread.
pub struct SendBox<T>(pub T);
unsafe impl<T> Send for SendBox<T> {}

type Job = Box<dyn FnOnce(&mut Ctx) + Send>;

/// A manager polled on its own thread. [`Loop::serve`] also opens a listener, whose port
/// [`Loop::addr`] and [`Loop::tcp`] use.
pub struct Loop {
    jobs: mpsc::Sender<Job>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Every event seen, in order.
    pub log: Arc<Mutex<Vec<Ev>>>,
    /// The listener `serve` opened (0 without one).
    pub listener: u64,
    /// Its port.
    pub port: u16,
}

impl Loop {
    /// A manager polled on a new thread; `handler` sees every event after it is logged.
    pub fn start<F>(mut handler: F) -> Loop
    where
        F: FnMut(&mut Ctx, &Ev) + Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<Job>();
        let (stop2, log2) = (stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            let mgr = unsafe { wss_mgr_new(std::ptr::null()) };
            assert!(!mgr.is_null());
            let mut ctx = Ctx { mgr, listener: 0 };
            let mut evs: Vec<wss_event> = Vec::with_capacity(64);
            while !stop2.load(Ordering::Relaxed) {
                while let Ok(job) = rx.try_recv() {
                    job(&mut ctx);
                }
                unsafe { wss_mgr_poll(mgr, 2, std::ptr::null_mut()) };
                loop {
                    let n = unsafe { wss_mgr_next_events(mgr, evs.as_mut_ptr(), 64) };
                    if n == 0 {
                        break;
                    }
                    unsafe { evs.set_len(n) };
                    let copied: Vec<Ev> = evs.iter().map(Ev::copy).collect();
                    unsafe { evs.set_len(0) };
                    for ev in &copied {
                        log2.lock().unwrap().push(ev.clone());
                        handler(&mut ctx, ev);
                    }
                }
            }
            unsafe { wss_mgr_free(mgr) };
        });
        Loop {
            jobs: tx,
            stop,
            thread: Some(thread),
            log,
            listener: 0,
            port: 0,
        }
    }

    /// A manager polled on a new thread and listening on `url` (port 0: any free port).
    pub fn serve<F>(url: &str, opts: Option<wss_listen_opts>, handler: F) -> Loop
    where
        F: FnMut(&mut Ctx, &Ev) + Send + 'static,
    {
        let mut lp = Loop::start(handler);
        (lp.listener, lp.port) = lp.listen(url, opts);
        lp
    }

    /// Runs `f` on the polling thread and returns its result.
    pub fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut Ctx) -> R + Send + 'static) -> R {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .send(Box::new(move |ctx: &mut Ctx| {
                let _ = tx.send(f(ctx));
            }))
            .unwrap();
        rx.recv_timeout(WAIT)
            .expect("the loop did not run the call")
    }

    /// Opens a listener; returns (id, port).
    pub fn listen(&self, url: &str, opts: Option<wss_listen_opts>) -> (u64, u16) {
        let url = CString::new(url).unwrap();
        let opts = SendBox(opts);
        self.call(move |ctx| {
            let opts = opts;
            let mut id = 0;
            let p = opts.0.as_ref().map_or(std::ptr::null(), |o| o as *const _);
            let r = unsafe { wss_mgr_listen(ctx.mgr, url.as_ptr(), p, &mut id) };
            assert_eq!(r, OK, "listen: {}", ctx.last_error());
            let mut port = 0;
            unsafe { wsserver::ffi::conn::wss_listener_port(ctx.mgr, id, &mut port) };
            ctx.listener = id;
            (id, port)
        })
    }

    /// Opens a client connection; returns (result, id).
    pub fn connect(&self, url: &str, opts: Option<wss_connect_opts>) -> (wss_result, u64) {
        let url = CString::new(url).unwrap();
        let opts = SendBox(opts);
        self.call(move |ctx| {
            let opts = opts;
            let mut id = 0;
            let p = opts.0.as_ref().map_or(std::ptr::null(), |o| o as *const _);
            let r = unsafe { wss_mgr_connect(ctx.mgr, url.as_ptr(), p, &mut id) };
            (r, id)
        })
    }

    /// `127.0.0.1:port` of the listener `serve` opened.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A raw TCP connection to the listener `serve` opened (reads time out after WAIT).
    pub fn tcp(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr()).unwrap();
        s.set_read_timeout(Some(WAIT)).unwrap();
        s
    }

    /// Events of one kind so far.
    pub fn events(&self, k: wss_event_kind) -> Vec<Ev> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.is(k))
            .cloned()
            .collect()
    }

    /// Events of one connection so far.
    pub fn events_of(&self, conn: u64) -> Vec<Ev> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.conn == conn)
            .cloned()
            .collect()
    }

    /// Waits (at most WAIT) for the first logged event matching `pred`, and returns it.
    pub fn wait_event(&self, what: &str, pred: impl Fn(&Ev) -> bool) -> Ev {
        self.wait_event_for(what, WAIT, pred)
    }

    pub fn wait_event_for(&self, what: &str, limit: Duration, pred: impl Fn(&Ev) -> bool) -> Ev {
        let t0 = Instant::now();
        loop {
            if let Some(e) = self.log.lock().unwrap().iter().find(|e| pred(e)) {
                return e.clone();
            }
            if t0.elapsed() > limit {
                panic!(
                    "timed out waiting for {what}; log:\n{}",
                    summary(&self.log.lock().unwrap())
                );
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits (at most WAIT) until `pred` holds over the log.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&[Ev]) -> bool) {
        let t0 = Instant::now();
        while t0.elapsed() < WAIT {
            if pred(&self.log.lock().unwrap()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        panic!(
            "timed out waiting for {what}; log:\n{}",
            summary(&self.log.lock().unwrap())
        );
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let r = t.join();
            if r.is_err() && !std::thread::panicking() {
                panic!("loop thread panicked");
            }
        }
    }
}
