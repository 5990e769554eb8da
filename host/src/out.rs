//! Standard output that a closed pipe does not break: `host train ... | head -1` keeps
//! training and saves its model after `head` has gone, instead of panicking at the next line
//! it prints (Rust ignores SIGPIPE, so a write to a closed pipe is an error). Once a write
//! fails, later lines are dropped.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes one line to standard output; after a failed write (a closed pipe), nothing.
pub fn line(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_fmt(args).and_then(|()| out.write_all(b"\n")).and_then(|()| out.flush()).is_err() {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// `println!` through [`line`].
macro_rules! outln {
    () => {
        $crate::out::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
