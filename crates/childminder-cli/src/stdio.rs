//! How the command's stdin, stdout and stderr are connected, and how their
//! bytes move when they are streamed.
//!
//! Per stream, decided before the command starts ([`Plan::decide`]): a
//! terminal is handed to the command as it is (it keeps colours, line
//! editing and job control), as is a closed fd and stdin, whatever it is
//! (the command reads it itself, as under `timeout`: nothing is read
//! ahead on its behalf, so what it leaves in a pipe stays for the next
//! reader). Everything else is streamed: the command writes into a pipe
//! and childminder copies that to its own stdout or stderr, counting the
//! bytes. `--stream-stdio` streams stdin too (unless it is a file).
//!
//! The copy-out runs on childminder's one thread, on the event loop, and
//! never blocks it: from a pipe to a pipe the bytes move with `splice(2)`
//! (`SPLICE_F_NONBLOCK` keeps it from waiting on the description the
//! shell shares with us, and no byte passes through user space); to a
//! terminal, `read` and a non-blocking `write` on a private open file
//! description (so the shared one stays as it was); to a socket, `send`
//! with `MSG_DONTWAIT`; to a file or `/dev/null`, which never wait for a
//! reader, `read` and `write` through one 64 KiB buffer. A reader that
//! does not read therefore never stops childminder from keeping the
//! deadline.
//!
//! Why not `splice` into a file too: measured (docs/bench.md), splice
//! drains the command's pipe faster than the command refills it, so the
//! loop wakes once per small chunk and the command is woken as often;
//! a 64 KiB `read` lets the pipe fill between wake-ups, as `cat` does,
//! and was 1.3x faster to `/dev/null` and 1.2x to a file.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use childminder::{ChildStderr, ChildStdin, ChildStdout};
use tokio::io::AsyncWriteExt;
use tokio::io::unix::AsyncFd;

use crate::sys::{self, FdKind};

/// Bytes moved per `splice(2)`: more than a pipe holds, so one call drains
/// it.
const SPLICE_CHUNK: usize = 1 << 20;
/// The buffer of the `read`/`write` path: a whole default pipe (16 pages),
/// so one `read` empties it; larger buffers measured no faster.
const COPY_BUFFER: usize = 64 * 1024;

/// Which streams are handed over: `--inherit-stdio`, `--stream-stdio`, or
/// by what each one is (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// stdin and terminals are handed over; stdout and stderr pipes,
    /// files and sockets are streamed.
    Auto,
    /// All three handed over.
    InheritAll,
    /// stdout and stderr streamed whatever they are; stdin too, unless it
    /// is a file or closed.
    StreamAll,
}

/// The three streams' fate.
pub struct Plan {
    pub stdin: Option<Source>,
    pub stdout: Option<Sink>,
    pub stderr: Option<Sink>,
    /// The streams handed over as they are (the report's
    /// `inherited_streams`).
    pub inherited: Vec<&'static str>,
}

/// The names of the streams, by fd.
const NAMES: [&str; 3] = ["stdin", "stdout", "stderr"];

impl Plan {
    /// Decides each stream and opens what streaming it needs.
    ///
    /// # Errors
    ///
    /// When an fd cannot be duplicated or registered (the fd limit): a
    /// failure of childminder's own.
    pub fn decide(mode: Mode) -> io::Result<Plan> {
        let mut inherited = Vec::new();
        let kinds = [0, 1, 2].map(sys::kind);
        let streamed = |fd: usize| streamed(mode, fd, kinds[fd]);
        let stdin = if streamed(0) {
            Source::open(0, kinds[0])?
        } else {
            None
        };
        let stdout = streamed(1).then(|| Sink::open(1, kinds[1])).transpose()?;
        let stderr = streamed(2).then(|| Sink::open(2, kinds[2])).transpose()?;
        for (fd, open) in [stdin.is_some(), stdout.is_some(), stderr.is_some()]
            .into_iter()
            .enumerate()
        {
            if !open {
                inherited.push(NAMES[fd]);
            }
        }
        Ok(Plan {
            stdin,
            stdout,
            stderr,
            inherited,
        })
    }
}

/// Whether our stream `fd` (0, 1 or 2), of kind `kind`, is streamed
/// through childminder in `mode`; otherwise it is handed to the command as
/// it is.
pub fn streamed(mode: Mode, fd: usize, kind: FdKind) -> bool {
    match mode {
        Mode::InheritAll => false,
        // Nothing to read or write.
        _ if kind == FdKind::Closed => false,
        // The command's to read, as under `timeout`. Streamed, childminder
        // would read ahead of the command, and what the command never read
        // would be lost to the pipe's next reader (the rest of a
        // `while read line; do childminder run ...; done` loop's input).
        Mode::Auto if fd == 0 => false,
        // The command keeps colours, line editing and job control.
        Mode::Auto if kind == FdKind::Terminal => false,
        // A file needs no forwarding: the command reads it itself, may seek
        // in it, and no byte is consumed on its behalf.
        _ if fd == 0 && matches!(kind, FdKind::File | FdKind::Other) => false,
        _ => true,
    }
}

/// Where childminder's copy of one output stream goes: its own stdout or
/// stderr.
pub struct Sink {
    dest: Dest,
    kind: FdKind,
}

enum Dest {
    /// Never blocks: a pipe (`splice` is non-blocking on pipes), or a
    /// private non-blocking description of a terminal; waited on with the
    /// event loop.
    Ready(AsyncFd<OwnedFd>),
    /// A file or device whose writes do not wait for a reader.
    Plain(OwnedFd),
}

impl Sink {
    fn open(fd: RawFd, kind: FdKind) -> io::Result<Sink> {
        let own = || sys::stdio_fd(fd).ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF));
        let dest = match kind {
            FdKind::Pipe | FdKind::Socket => Dest::Ready(sys::register(sys::dup(own()?)?)?),
            FdKind::Terminal => match sys::reopen_nonblocking(fd, true) {
                Ok(private) => Dest::Ready(sys::register(private)?),
                // No /proc: write to the shared description, blocking.
                Err(_) => Dest::Plain(sys::dup(own()?)?),
            },
            _ => Dest::Plain(sys::dup(own()?)?),
        };
        Ok(Sink { dest, kind })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        match &self.dest {
            Dest::Ready(fd) => fd.get_ref().as_fd(),
            Dest::Plain(fd) => fd.as_fd(),
        }
    }

    /// The copy-out should use `splice(2)`: only into a pipe. A terminal
    /// has no splice support, a socket would block on the description we
    /// share, and into a file or device `read`/`write` is faster (see the
    /// module docs).
    fn splices(&self) -> bool {
        // (A pipe's destination is always `Dest::Ready`: see `open`.)
        self.kind == FdKind::Pipe
    }

    /// Waits until the destination has room again, after a `splice` found
    /// it full.
    async fn wait_for_room(&self) -> io::Result<()> {
        match &self.dest {
            Dest::Ready(fd) => {
                let mut guard = fd.writable().await?;
                if !sys::poll_now(self.fd())?.writable {
                    guard.clear_ready();
                }
                Ok(())
            }
            // Only a description someone else made non-blocking gets here.
            Dest::Plain(_) => {
                tokio::time::sleep(Duration::from_millis(1)).await;
                Ok(())
            }
        }
    }

    /// Writes some of `buf`, waiting (on the event loop) for room.
    async fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let socket = self.kind == FdKind::Socket;
        loop {
            match &self.dest {
                Dest::Ready(fd) => {
                    let mut guard = fd.writable().await?;
                    match guard.try_io(|fd| sys::write(fd.get_ref().as_fd(), buf, socket)) {
                        Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                        Ok(result) => return result,
                        Err(_would_block) => {}
                    }
                }
                Dest::Plain(fd) => match sys::write(fd.as_fd(), buf, socket) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait_for_room().await?,
                    result => return result,
                },
            }
        }
    }
}

/// The read end of one of the command's output pipes.
pub trait OutputPipe: AsFd {
    /// See [`ChildStdout::readable`].
    fn readable(&self) -> impl Future<Output = io::Result<()>>;
    /// See [`ChildStdout::try_io`].
    fn try_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
}

macro_rules! output_pipe {
    ($name:ty) => {
        impl OutputPipe for $name {
            fn readable(&self) -> impl Future<Output = io::Result<()>> {
                <$name>::readable(self)
            }
            fn try_io<R>(&self, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
                <$name>::try_io(self, f)
            }
        }
    };
}
output_pipe!(ChildStdout);
output_pipe!(ChildStderr);

/// Where a pump stopped.
#[derive(Debug)]
pub enum PumpError {
    /// Reading the command's pipe failed.
    Read(io::Error),
    /// Delivering to our stdout/stderr failed (`EPIPE` when its reader
    /// has gone).
    Deliver(io::Error),
}

enum Moved {
    Bytes(usize),
    DestinationFull,
    Unsupported,
}

/// Copies the pipe `from` to `to` until end-of-file, adding each byte
/// delivered to `delivered`.
///
/// # Cancel safety
///
/// Cancelling never loses count: what was counted was delivered. What was
/// not is still in the pipe, except, on the `read`/`write` path while a
/// write waits for room, the rest of the one buffer already read: a cut-off
/// drops it, as it drops what is left in the pipe.
///
/// # Errors
///
/// [`PumpError`]: the copy stops at the first failure.
pub async fn pump(
    from: &impl OutputPipe,
    to: &Sink,
    delivered: &Cell<u64>,
) -> Result<(), PumpError> {
    let mut splicing = to.splices();
    let mut buf = Vec::new();
    loop {
        from.readable().await.map_err(PumpError::Read)?;
        if splicing {
            let attempt = from.try_io(|| match sys::splice(from.as_fd(), to.fd(), SPLICE_CHUNK) {
                Ok(n) => Ok(Moved::Bytes(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let now = sys::poll_now(from.as_fd())?;
                    if now.readable || now.hung_up {
                        Ok(Moved::DestinationFull)
                    } else {
                        // Our pipe is empty: wait for the command.
                        Err(e)
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(Moved::Unsupported),
                Err(e) => Err(e),
            });
            match attempt {
                Ok(Moved::Bytes(0)) => return Ok(()),
                Ok(Moved::Bytes(n)) => delivered.set(delivered.get() + n as u64),
                Ok(Moved::DestinationFull) => {
                    to.wait_for_room().await.map_err(PumpError::Deliver)?
                }
                // A kernel without splice between these two: copy instead.
                Ok(Moved::Unsupported) => splicing = false,
                Err(e) if retry(&e) => {}
                // A reader that left, met when the command's pipe had
                // nothing more to give (splice checks the destination
                // first): no byte was lost, so no copy failed (an
                // acceptance run saw `run -- sleep 1 | true` report one).
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) && at_end(from) => return Ok(()),
                // splice reports the side that failed only through errno:
                // EPIPE, ENOSPC, EIO, EBADF are the destination's.
                Err(e) => return Err(PumpError::Deliver(e)),
            }
            continue;
        }
        if buf.is_empty() {
            buf = vec![0; COPY_BUFFER];
        }
        let n = match from.try_io(|| sys::read(from.as_fd(), &mut buf)) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if retry(&e) => continue,
            Err(e) => return Err(PumpError::Read(e)),
        };
        let mut written = 0;
        while written < n {
            match to.write(&buf[written..n]).await {
                Ok(0) => return Err(PumpError::Deliver(io::ErrorKind::WriteZero.into())),
                Ok(k) => {
                    written += k;
                    delivered.set(delivered.get() + k as u64);
                }
                Err(e) => return Err(PumpError::Deliver(e)),
            }
        }
    }
}

/// Whether the pipe `from` is empty and no writer holds it: end-of-file.
fn at_end(from: &impl OutputPipe) -> bool {
    sys::poll_now(from.as_fd()).is_ok_and(|now| now.hung_up && !now.readable)
}

fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// Whether what is left in the pipe `from` is all there will be: no
/// process holds its write end any more. A pump still running then is only
/// waiting for its reader, not for the command's family.
pub fn writers_gone(from: &impl OutputPipe) -> bool {
    sys::poll_now(from.as_fd()).is_ok_and(|now| now.hung_up)
}

/// childminder's stdin when it is streamed to the command: a pipe, a
/// socket, or (with `--stream-stdio`) a terminal.
pub struct Source {
    fd: AsyncFd<OwnedFd>,
    kind: FdKind,
}

impl Source {
    /// `None` when it cannot be read without blocking childminder (no
    /// `/proc` to make a private non-blocking description): then it is
    /// handed over instead.
    fn open(fd: RawFd, kind: FdKind) -> io::Result<Option<Source>> {
        let fd = match kind {
            FdKind::Socket => sys::dup(
                sys::stdio_fd(fd).ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?,
            )?,
            _ => match sys::reopen_nonblocking(fd, false) {
                Ok(private) => private,
                Err(_) => return Ok(None),
            },
        };
        Ok(Some(Source {
            fd: sys::register(fd)?,
            kind,
        }))
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let fd = self.fd.get_ref().as_fd();
        match self.kind {
            // From the background (`childminder run ... &` in an
            // interactive shell), a terminal read would stop all of
            // childminder with SIGTTIN; with SIGTTIN blocked it fails with
            // EIO instead, which ends the input.
            FdKind::Terminal => {
                match sys::with_signal_blocked(libc::SIGTTIN, || sys::read(fd, buf)) {
                    Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(0),
                    other => other,
                }
            }
            FdKind::Socket => sys::recv_nowait(fd, buf),
            _ => sys::read(fd, buf),
        }
    }
}

/// Forwards our stdin to the command's until either ends, then closes the
/// command's stdin (it reads end-of-file).
///
/// # Errors
///
/// Reading our stdin failed (`"produce"` in the report), or writing to the
/// command's stdin failed other than by the command closing it (`"write"`).
pub async fn forward_input(
    from: &Source,
    mut to: ChildStdin,
) -> Result<(), (&'static str, io::Error)> {
    let mut buf = vec![0; COPY_BUFFER];
    loop {
        let mut guard = from.fd.readable().await.map_err(|e| ("produce", e))?;
        let n = match guard.try_io(|_| from.read(&mut buf)) {
            Ok(Ok(0)) => return Ok(()),
            Ok(Ok(n)) => n,
            Ok(Err(e)) if retry(&e) => continue,
            Ok(Err(e)) => return Err(("produce", e)),
            Err(_would_block) => continue,
        };
        match to.write_all(&buf[..n]).await {
            Ok(()) => {}
            // The command closed its stdin or exited: nothing more to give.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(("write", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FdKind::*;

    const KINDS: [FdKind; 6] = [Closed, Terminal, Pipe, Socket, File, Other];

    #[test]
    fn by_default_a_terminal_and_stdin_are_handed_over_and_output_pipes_files_sockets_streamed() {
        for fd in 0..3 {
            assert!(!streamed(Mode::Auto, fd, Terminal));
        }
        for kind in KINDS {
            assert!(!streamed(Mode::Auto, 0, kind), "stdin {kind:?}");
        }
        for fd in 1..3 {
            for kind in [Pipe, Socket, File, Other] {
                assert!(streamed(Mode::Auto, fd, kind), "{fd} {kind:?}");
            }
        }
    }

    #[test]
    fn a_stdin_file_is_handed_over_in_every_mode() {
        for mode in [Mode::Auto, Mode::StreamAll, Mode::InheritAll] {
            assert!(!streamed(mode, 0, File));
            assert!(!streamed(mode, 0, Other));
        }
    }

    #[test]
    fn a_closed_fd_is_never_streamed() {
        for mode in [Mode::Auto, Mode::StreamAll, Mode::InheritAll] {
            for fd in 0..3 {
                assert!(!streamed(mode, fd, Closed));
            }
        }
    }

    #[test]
    fn inherit_stdio_hands_everything_over() {
        for fd in 0..3 {
            for kind in KINDS {
                assert!(!streamed(Mode::InheritAll, fd, kind), "{fd} {kind:?}");
            }
        }
    }

    #[test]
    fn stream_stdio_streams_terminals_too() {
        for fd in 0..3 {
            assert!(streamed(Mode::StreamAll, fd, Terminal));
            assert!(streamed(Mode::StreamAll, fd, Pipe));
        }
        assert!(streamed(Mode::StreamAll, 1, File));
    }
}
