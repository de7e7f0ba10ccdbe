//! A Linux timerfd registered in the manager's poll, so that the manager's single file
//! descriptor also turns readable when a timer or deadline is due. Host loops that
//! sleep on `wss_mgr_fd` then need no timer of their own.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// A monotonic, non-blocking timerfd.
pub struct TimerFd {
    fd: OwnedFd,
    armed: Option<Instant>,
}

impl TimerFd {
    /// Creates a disarmed timer.
    pub fn new() -> io::Result<TimerFd> {
        // SAFETY: plain system call; the result is checked before use.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor we own.
        Ok(TimerFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            armed: None,
        })
    }

    /// Arms the timer for `at` (or disarms it), unless it is already set so.
    pub fn set(&mut self, at: Option<Instant>, now: Instant) {
        if at == self.armed {
            return;
        }
        self.armed = at;
        let value = match at {
            // A zero it_value disarms, so a due deadline becomes 1 ns.
            Some(at) => at
                .saturating_duration_since(now)
                .max(Duration::from_nanos(1)),
            None => Duration::ZERO,
        };
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: value.as_secs() as libc::time_t,
                tv_nsec: value.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: valid fd and a valid itimerspec; failure leaves the timer as it was,
        // which only delays a wakeup of a host loop that also polls with a timeout.
        unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
    }

    /// Consumes the expiration count after the fd fired, and forgets the armed time.
    pub fn clear(&mut self) {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a local buffer; EAGAIN is fine.
        unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        self.armed = None;
    }

    /// The descriptor, for registration.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
