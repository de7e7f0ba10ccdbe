//! The C ABI. The only place with `extern "C"`, raw pointers and conversions from C
//! types. Every function: catches panics ([`boundary`]), checks pointers, maps errors
//! to `wss_result`, and writes out-parameters only on success.
#![allow(non_camel_case_types)]
// The contract of each function is written for its C reader (which pointers may be
// NULL, how many bytes must be readable, lifetimes) rather than as a Rust `# Safety`
// section, which cbindgen would copy into the header as noise.
#![allow(clippy::missing_safety_doc)]

pub mod boundary;
pub mod conn;
pub mod event;
pub mod http;
pub mod mgr;
pub mod opts;
pub mod result;
pub mod timer;
pub mod util;
pub mod ws;

use crate::mgr::{Manager, Shared};
use result::wss_result;
use std::cell::UnsafeCell;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// An event manager. Opaque: create it with `wss_mgr_new`, free it with `wss_mgr_free`.
///
/// THREADS: a manager is driven by one thread at a time (it may move between threads).
/// The only functions that may be called on it from other threads, concurrently with
/// the polling thread, are `wss_mgr_wakeup` and `wss_send_threadsafe`. Any other call
/// made while another thread is inside the manager is detected and refused with
/// `WSS_RESULT_CONCURRENT_USE` (or the function's failure value). Functions that take
/// no manager (`wss_result_str`, `wss_version`, the encodings and digests) are
/// thread-safe.
pub struct wss_mgr {
    _private: [u8; 0],
}

/// A connection, listener or timer id. Never 0, never reused within a manager's life,
/// and below 2^53 (exact in a double, so Lua and JavaScript numbers hold it).
pub type wss_id = u64;

const LIVE: u64 = 0x7773_735f_6d67_7231;
const DEAD: u64 = 0x7773_735f_6465_6164;

/// What a `wss_mgr *` points to. Freed managers leave this small tombstone behind
/// (marked DEAD, kept reachable in [`TOMBSTONES`]) so that a call on a freed manager,
/// or a second free, is answered with `WSS_RESULT_FREED` instead of touching freed memory.
pub(crate) struct Handle {
    magic: AtomicU64,
    busy: AtomicBool,
    /// Thread-safe calls inside the handle now: `wss_mgr_free` waits for them to leave
    /// before it drops `shared`.
    inflight: AtomicUsize,
    /// Read without the busy flag by the thread-safe functions (counted in `inflight`);
    /// written only at creation and by `wss_mgr_free` once `inflight` is 0.
    shared: UnsafeCell<Option<Arc<Shared>>>,
    mgr: UnsafeCell<Option<Box<Manager>>>,
    last_error: UnsafeCell<CString>,
}

// SAFETY: `mgr` and `last_error` are only touched while holding the `busy` flag; `shared`
// is immutable between creation and free, free waits until no thread-safe call is
// inside, and `Shared` is itself Sync.
unsafe impl Sync for Handle {}

static TOMBSTONES: Mutex<Vec<usize>> = Mutex::new(Vec::new());

impl Handle {
    pub(crate) fn new_raw(mgr: Manager) -> *mut wss_mgr {
        let shared = mgr.shared().clone();
        let h = Box::new(Handle {
            magic: AtomicU64::new(LIVE),
            busy: AtomicBool::new(false),
            inflight: AtomicUsize::new(0),
            shared: UnsafeCell::new(Some(shared)),
            mgr: UnsafeCell::new(Some(Box::new(mgr))),
            last_error: UnsafeCell::new(CString::default()),
        });
        Box::into_raw(h).cast()
    }
}

/// Why a call could not get at its manager.
pub(crate) enum Denied {
    Null,
    Freed,
    Busy,
}

impl Denied {
    pub(crate) fn result(&self) -> wss_result {
        match self {
            Denied::Null => wss_result::WSS_RESULT_NULL_PARAMETER,
            Denied::Freed => wss_result::WSS_RESULT_FREED,
            Denied::Busy => wss_result::WSS_RESULT_CONCURRENT_USE,
        }
    }
}

/// Exclusive access to a live manager for the length of one call.
pub(crate) struct Guard<'a> {
    h: &'a Handle,
}

impl Guard<'_> {
    pub(crate) fn mgr(&mut self) -> &mut Manager {
        // SAFETY: the busy flag gives this guard exclusive access; the manager is
        // present while the magic is LIVE, which `enter` checked.
        unsafe { (*self.h.mgr.get()).as_deref_mut().expect("live manager") }
    }

    pub(crate) fn set_error(&mut self, text: String) {
        let text = CString::new(text.replace('\0', "\\0")).unwrap_or_default();
        // SAFETY: exclusive access under the busy flag.
        unsafe { *self.h.last_error.get() = text };
    }

    pub(crate) fn last_error(&self) -> *const std::ffi::c_char {
        // SAFETY: exclusive access under the busy flag; the CString lives in the handle.
        unsafe { (*self.h.last_error.get()).as_ptr() }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        self.h.busy.store(false, Ordering::Release);
    }
}

fn handle<'a>(p: *const wss_mgr) -> Result<&'a Handle, Denied> {
    if p.is_null() {
        return Err(Denied::Null);
    }
    // SAFETY: a non-null wss_mgr pointer comes from wss_mgr_new; handles are never
    // deallocated (freed managers leave a tombstone), so reading the magic is sound.
    let h = unsafe { &*(p as *const Handle) };
    match h.magic.load(Ordering::Acquire) {
        LIVE => Ok(h),
        _ => Err(Denied::Freed),
    }
}

/// Takes exclusive access to a manager for one call.
pub(crate) fn enter<'a>(p: *const wss_mgr) -> Result<Guard<'a>, Denied> {
    let h = handle(p)?;
    if h.busy.swap(true, Ordering::Acquire) {
        return Err(Denied::Busy);
    }
    if h.magic.load(Ordering::Acquire) != LIVE {
        h.busy.store(false, Ordering::Release);
        return Err(Denied::Freed);
    }
    Ok(Guard { h })
}

/// The thread-safe part of a manager, for one thread-safe call: holds off
/// `wss_mgr_free` until dropped.
pub(crate) struct SharedGuard<'a> {
    h: &'a Handle,
    shared: &'a Arc<Shared>,
}

impl std::ops::Deref for SharedGuard<'_> {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        self.shared
    }
}

impl Drop for SharedGuard<'_> {
    fn drop(&mut self) {
        self.h.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The thread-safe part of a manager, without taking the busy flag.
pub(crate) fn shared<'a>(p: *const wss_mgr) -> Result<SharedGuard<'a>, Denied> {
    let h = handle(p)?;
    // Announce the call, then check that the manager is still live: `free` marks it
    // dead, then waits for `inflight` to fall to 0 (both SeqCst, so one of the two
    // sees the other).
    h.inflight.fetch_add(1, Ordering::SeqCst);
    if h.magic.load(Ordering::SeqCst) != LIVE {
        h.inflight.fetch_sub(1, Ordering::SeqCst);
        return Err(Denied::Freed);
    }
    // SAFETY: `shared` is only written at creation and by `free`, which waits for this
    // call to leave (the guard's drop) before it does.
    match unsafe { (*h.shared.get()).as_ref() } {
        Some(shared) => Ok(SharedGuard { h, shared }),
        None => {
            h.inflight.fetch_sub(1, Ordering::SeqCst);
            Err(Denied::Freed)
        }
    }
}

/// Runs a fallible call on a manager: maps errors to codes, records the last error,
/// keeps the manager's fd truthful afterwards.
pub(crate) fn call(
    p: *const wss_mgr,
    f: impl FnOnce(&mut Manager) -> crate::error::Result<()>,
) -> wss_result {
    let mut g = match enter(p) {
        Ok(g) => g,
        Err(d) => return d.result(),
    };
    let r = f(g.mgr());
    g.mgr().after_call();
    match r {
        Ok(()) => wss_result::WSS_RESULT_OK,
        Err(e) => {
            let code = wss_result::from(&e);
            g.set_error(e.to_string());
            code
        }
    }
}

/// Frees a manager, leaving a tombstone.
pub(crate) fn free(p: *mut wss_mgr) -> Result<(), Denied> {
    let h = handle(p)?;
    if h.busy.swap(true, Ordering::Acquire) {
        // In use by another thread: refusing beats a use-after-free.
        return Err(Denied::Busy);
    }
    if h.magic.swap(DEAD, Ordering::SeqCst) != LIVE {
        h.busy.store(false, Ordering::Release);
        return Err(Denied::Freed);
    }
    // Thread-safe calls that got in before the magic changed finish first (a queue push
    // and an eventfd write: microseconds); later ones see DEAD.
    while h.inflight.load(Ordering::SeqCst) != 0 {
        std::thread::yield_now();
    }
    // SAFETY: exclusive (busy flag held, magic now DEAD so no new guard is handed out,
    // and no thread-safe call is inside).
    unsafe {
        drop((*h.mgr.get()).take());
        drop((*h.shared.get()).take());
        *h.last_error.get() = CString::default();
    }
    h.busy.store(false, Ordering::Release);
    if let Ok(mut t) = TOMBSTONES.lock() {
        t.push(p as usize);
    }
    Ok(())
}
