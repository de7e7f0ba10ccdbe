//! The `Date` header value, formatted once per second.

use std::time::{SystemTime, UNIX_EPOCH};

/// Caches the IMF-fixdate text of the current second.
#[derive(Debug, Default)]
pub struct DateCache {
    second: u64,
    text: String,
}

impl DateCache {
    /// The current date as `Sun, 06 Nov 1994 08:49:37 GMT`.
    pub fn now(&mut self) -> &str {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        &self.text
    }
}
