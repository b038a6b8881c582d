//! Logging and printing that never take the server down.
//!
//! `println!` and `eprintln!` panic when the write fails, and so does tracing-subscriber's
//! report of a failed log write (an `eprintln!`): with standard error or output on a full disk
//! (or a closed pipe), one log line would panic a request's task, or the sequencer's thread. So
//! the log goes through `LossyStderr`, and what `serve` prints goes through `print_text`: a
//! write that fails is dropped and counted (`sportsbook_log_write_errors_total` on `/metrics`),
//! and serving goes on.

use std::io::{self, Write};

/// Standard error for the log: a line that cannot be written is dropped and counted, never an
/// error to the logger.
#[derive(Clone, Copy, Debug, Default)]
pub struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if io::stderr().lock().write_all(buf).is_err() {
            gateway::record_log_write_error();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Standard error is unbuffered; a failure was counted by `write`.
        let _ = io::stderr().flush();
        Ok(())
    }
}

/// Prints `text` on standard output as it is (end it with a newline), dropping and counting it
/// when it cannot be written.
pub fn print_text(text: &str) {
    let mut stdout = io::stdout().lock();
    if stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()).is_err() {
        gateway::record_log_write_error();
    }
}

/// Prints `text` on standard error as it is (progress lines), dropping and counting it when it
/// cannot be written.
pub fn print_text_stderr(text: &str) {
    let _ = LossyStderr.write_all(text.as_bytes());
}
