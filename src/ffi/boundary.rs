//! The panic boundary and the checks every exported function starts with.
//!
//! Every `extern "C"` function body runs inside [`boundary`]: a panic is caught and
//! turned into a value of the function's return type ([`PanicDefault`]), so it never
//! unwinds into C or Lua.

use super::result::wss_result;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The value an exported function returns when its body panicked.
pub trait PanicDefault {
    /// That value.
    fn panic_default() -> Self;
}

impl PanicDefault for wss_result {
    fn panic_default() -> Self {
        wss_result::WSS_RESULT_PANIC
    }
}

impl PanicDefault for bool {
    fn panic_default() -> Self {
        false
    }
}

impl PanicDefault for usize {
    fn panic_default() -> Self {
        0
    }
}

impl PanicDefault for u32 {
    fn panic_default() -> Self {
        0
    }
}

impl PanicDefault for i32 {
    fn panic_default() -> Self {
        -1
    }
}

impl PanicDefault for i64 {
    fn panic_default() -> Self {
        -1
    }
}

impl PanicDefault for () {
    fn panic_default() -> Self {}
}

impl<T> PanicDefault for *const T {
    fn panic_default() -> Self {
        std::ptr::null()
    }
}

impl<T> PanicDefault for *mut T {
    fn panic_default() -> Self {
        std::ptr::null_mut()
    }
}

/// Runs `f`, turning a panic into the return type's panic value.
pub fn boundary<R: PanicDefault>(f: impl FnOnce() -> R) -> R {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| R::panic_default())
}

/// Returns `WSS_RESULT_NULL_PARAMETER` from the enclosing function if a pointer is null.
macro_rules! check_null {
    ($($p:expr),+) => {
        $(if $p.is_null() {
            return $crate::ffi::result::wss_result::WSS_RESULT_NULL_PARAMETER;
        })+
    };
}
pub(crate) use check_null;

/// A byte slice from a pointer and length; a null pointer is allowed when `len` is 0.
///
/// # Safety
/// When non-null, `ptr` must point to `len` readable bytes that outlive the slice.
pub unsafe fn slice<'a>(ptr: *const u8, len: usize) -> Option<&'a [u8]> {
    if len == 0 {
        Some(&[])
    } else if ptr.is_null() {
        None
    } else {
        // SAFETY: the caller promises `len` readable bytes at `ptr`.
        Some(unsafe { std::slice::from_raw_parts(ptr, len) })
    }
}

/// A NUL-terminated string as bytes (`None` for a null pointer).
///
/// # Safety
/// When non-null, `p` must point to a NUL-terminated string.
pub unsafe fn cstr<'a>(p: *const std::ffi::c_char) -> Option<&'a [u8]> {
    if p.is_null() {
        None
    } else {
        // SAFETY: the caller promises a NUL-terminated string.
        Some(unsafe { std::ffi::CStr::from_ptr(p) }.to_bytes())
    }
}

/// A NUL-terminated UTF-8 string (`Err` when not UTF-8).
///
/// # Safety
/// As [`cstr`].
pub unsafe fn cstr_utf8<'a>(
    p: *const std::ffi::c_char,
) -> Option<Result<&'a str, std::str::Utf8Error>> {
    // SAFETY: forwarded to the caller.
    unsafe { cstr(p) }.map(std::str::from_utf8)
}
