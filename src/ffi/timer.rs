//! Timers.

use super::boundary::{boundary, check_null};
use super::result::wss_result;
use super::{call, wss_id, wss_mgr};

/// Starts a timer: a `WSS_EV_TIMER` event with the timer's id in `conn` after `ms`
/// milliseconds, and every `ms` after that if `repeat` (a late poll skips missed
/// periods rather than delivering a burst). The manager's fd turns readable when it is due.
///
/// Returns: `WSS_RESULT_OK` and the timer id in `*id_out` (timer ids never equal
/// connection ids); `WSS_RESULT_INVALID_ARGUMENT` for a repeating timer of 0 ms.
#[no_mangle]
pub unsafe extern "C" fn wss_timer_add(
    mgr: *mut wss_mgr,
    ms: u64,
    repeat: bool,
    id_out: *mut wss_id,
) -> wss_result {
    boundary(|| {
        check_null!(id_out);
        let mut id = 0;
        let r = call(mgr, |m| {
            id = m.timer_add(ms, repeat)?;
            Ok(())
        });
        if r == wss_result::WSS_RESULT_OK {
            // SAFETY: non-null out-parameter.
            unsafe { *id_out = id };
        }
        r
    })
}

/// Stops a timer. An event it already queued is still delivered.
/// Returns: `WSS_RESULT_OK`; `WSS_RESULT_NOT_FOUND` when the id is not a live timer
/// (a one-shot timer that fired is gone).
#[no_mangle]
pub unsafe extern "C" fn wss_timer_cancel(mgr: *mut wss_mgr, timer: wss_id) -> wss_result {
    boundary(|| call(mgr, |m| m.timer_cancel(timer)))
}
