//! Progress bars on stderr for large transfers, only when stderr is a terminal.

use crate::{Progress, ProgressFn};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

/// Transfers at most this large (and of known size) get no bar.
pub const BAR_THRESHOLD_BYTES: u64 = 8 * 1024 * 1024;

/// A bar for a transfer of `total` bytes (unknown: `None`), or `None` when no bar
/// should be shown. Feed it through the returned callback; call
/// [`ProgressBar::finish_and_clear`] when done.
pub fn transfer_bar(verb: &str, total: Option<u64>) -> Option<(ProgressBar, ProgressFn)> {
    if !std::io::stderr().is_terminal() || total.is_some_and(|t| t <= BAR_THRESHOLD_BYTES) {
        return None;
    }
    let bar = match total {
        Some(t) => ProgressBar::new(t),
        None => ProgressBar::new_spinner(),
    };
    let template = match total {
        Some(_) => "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        None => "{spinner} {msg} {bytes} {bytes_per_sec}",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(verb.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    let handle = bar.clone();
    let callback: ProgressFn = Arc::new(move |p: Progress| {
        if let Some(t) = p.total {
            handle.set_length(t);
        }
        handle.set_position(p.done);
    });
    Some((bar, callback))
}
