//! Where `--report` goes, opened and written so that it never blocks the
//! supervision and never changes the verdict.
//!
//! - The file is opened (created, truncated) before the command starts, so
//!   a bad path is a usage error (125) and nothing runs. It is opened
//!   non-blocking: a FIFO that no one reads yet does not hold the start (as
//!   a plain `open` would, forever); it is opened again at the end.
//! - The report is written when the run is over, within a limit the caller
//!   gives (one grace period, never past the deadline's bound): a FIFO whose
//!   reader never comes, or a pipe (`--report -` on a stderr pipe) whose
//!   reader does not read, is given up at the limit.
//! - Only a regular file is `fsync`ed (a FIFO or `/dev/null` refuses it).
//! - A report that cannot be written is a message on stderr; the exit status
//!   stays the command's.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::sys;

/// How often a FIFO without a reader is opened again while the limit
/// allows: nothing signals a reader's arrival, so the open is retried.
const FIFO_RETRY: Duration = Duration::from_millis(10);

/// Where the report goes.
#[derive(Debug)]
pub enum ReportSink {
    /// `--report -`: childminder's stderr.
    Stderr,
    /// A file, FIFO or device, open for writing (non-blocking).
    Open { fd: OwnedFd, path: OsString },
    /// A FIFO that had no reader at the start: opened at the end.
    FifoWithoutReader { path: OsString },
}

impl ReportSink {
    /// Opens the report's destination without waiting.
    ///
    /// # Errors
    ///
    /// The message for the user when the path cannot be opened (a missing
    /// directory, no permission): childminder then exits 125 and runs
    /// nothing.
    pub fn open(path: &OsStr) -> Result<ReportSink, String> {
        if path == "-" {
            return Ok(ReportSink::Stderr);
        }
        match sys::open_report(path) {
            Ok(fd) => Ok(ReportSink::Open {
                fd,
                path: path.to_owned(),
            }),
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(ReportSink::FifoWithoutReader {
                path: path.to_owned(),
            }),
            Err(e) => Err(format!("cannot create the report file {path:?}: {e}")),
        }
    }

    /// Writes `line`, giving up at `limit`.
    ///
    /// # Errors
    ///
    /// The message for the user: the write failed (`ENOSPC`, a reader that
    /// went away), or `limit` passed first.
    pub fn write(self, line: &str, limit: Instant) -> Result<(), String> {
        match self {
            ReportSink::Stderr => sys::write_stderr_until(line.as_bytes(), limit)
                .map_err(|e| format!("cannot write the report to stderr: {e}")),
            ReportSink::Open { fd, path } => write_to(&fd, line.as_bytes(), limit)
                .map_err(|e| format!("cannot write the report file {path:?}: {e}")),
            ReportSink::FifoWithoutReader { path } => open_when_read(&path, limit)
                .and_then(|fd| write_to(&fd, line.as_bytes(), limit))
                .map_err(|e| format!("cannot write the report file {path:?}: {e}")),
        }
    }
}

/// The limit for writing the report, from `now`: one grace period, but
/// never past the deadline's bound (`deadline_at` + the escalation: a grace
/// period, SIGKILL and its 1 s wait + one grace period for delivery), and
/// never before `now` (one attempt that does not wait is always made).
pub fn write_limit(now: Instant, grace: Duration, deadline_at: Option<Instant>) -> Instant {
    let one_grace = now + grace;
    match deadline_at {
        Some(at) => one_grace
            .min(at + grace * 2 + Duration::from_secs(1))
            .max(now),
        None => one_grace,
    }
}

fn write_to(fd: &OwnedFd, bytes: &[u8], limit: Instant) -> io::Result<()> {
    sys::write_all_until(fd.as_fd(), bytes, false, limit)?;
    if sys::is_regular_file(fd.as_fd()) {
        sys::fsync(fd.as_fd())?;
    }
    Ok(())
}

/// Opens a FIFO for writing once a reader has it open, retrying until
/// `limit`.
fn open_when_read(path: &OsStr, limit: Instant) -> io::Result<OwnedFd> {
    loop {
        match sys::open_report(path) {
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
                let left = limit.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "it is a FIFO that nobody opened for reading in time",
                    ));
                }
                std::thread::sleep(left.min(FIFO_RETRY));
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_one_grace_never_past_the_deadline_bound() {
        let now = Instant::now();
        let grace = Duration::from_secs(5);
        assert_eq!(write_limit(now, grace, None), now + grace);
        // Far from the deadline's bound: one grace.
        let later = now + Duration::from_secs(3600);
        assert_eq!(write_limit(now, grace, Some(later)), now + grace);
        // Close to it: the bound.
        let at = now - Duration::from_secs(10);
        assert_eq!(
            write_limit(now, grace, Some(at)),
            at + grace * 2 + Duration::from_secs(1)
        );
        // Past it: now.
        let at = now - Duration::from_secs(60);
        assert_eq!(write_limit(now, grace, Some(at)), now);
    }
}
