//! Readiness checks: the systemd notify socket, s6's notification fd, and a
//! TCP port that accepts a connection. Each is prepared before the spawn
//! (it may add to the child's environment or fds) and then awaited.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UnixDatagram;
use tokio::net::unix::pipe;

use super::spec::Readiness;
use crate::command::Command;
use crate::sys;

/// The name of the environment variable of the notify protocol.
pub(crate) const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// First and longest pause between two TCP connection attempts.
const TCP_FIRST_PAUSE: Duration = Duration::from_millis(20);
const TCP_MAX_PAUSE: Duration = Duration::from_millis(500);

/// A readiness check, prepared for one run of a child.
#[derive(Debug)]
pub(crate) enum Check {
    /// Ready once spawned.
    Spawned,
    /// Our end of the notify socket.
    Notify(UnixDatagram),
    /// The read end of the notification pipe.
    Fd(OwnedFd),
    /// The address to connect to.
    Tcp(String),
}

impl Check {
    /// Prepares the check and changes `cmd` for it: `NOTIFY_SOCKET` in its
    /// environment, or the pipe's write end as its fd N. Our copy of the
    /// write end lives in `cmd`: drop `cmd` after the spawn.
    ///
    /// # Errors
    ///
    /// The OS error creating the socket or the pipe (fd or memory limits).
    ///
    /// # Panics
    ///
    /// For [`Readiness::Notify`], outside a tokio runtime.
    pub(crate) fn prepare(readiness: &Readiness, cmd: &mut Command) -> io::Result<Check> {
        Ok(match readiness {
            Readiness::Spawned => Check::Spawned,
            Readiness::Notify => {
                let (socket, name) = bind_notify_socket()?;
                cmd.env(NOTIFY_SOCKET, format!("@{name}"));
                Check::Notify(socket)
            }
            Readiness::Fd(n) => {
                let (read, write) = sys::pipe()?;
                sys::set_new_pipe_nonblocking(std::os::fd::AsFd::as_fd(&read))?;
                cmd.pass_fd(write, *n);
                Check::Fd(read)
            }
            Readiness::Tcp(addr) => Check::Tcp(addr.clone()),
        })
    }

    /// True when there is nothing to wait for.
    pub(crate) fn is_immediate(&self) -> bool {
        matches!(self, Check::Spawned)
    }

    /// Resolves when the child is ready, with what has to stay open while
    /// it runs (the notify socket). A check that can no longer pass (the
    /// child closed its notification fd without a newline, the socket
    /// failed) never resolves: the start timeout or the child's exit ends
    /// the wait.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe, but the check is consumed: a cancelled wait cannot be
    /// resumed.
    pub(crate) async fn wait(self) -> Listener {
        let outcome = match self {
            Check::Spawned => return Listener(None),
            Check::Notify(socket) => wait_notify(&socket).await.map(|()| Listener(Some(socket))),
            Check::Fd(fd) => wait_fd_line(fd).await.map(|()| Listener(None)),
            Check::Tcp(addr) => {
                wait_tcp(&addr).await;
                return Listener(None);
            }
        };
        match outcome {
            Ok(listener) => listener,
            Err(e) => {
                tracing::debug!(error = %e, "readiness check failed; waiting for the start timeout");
                std::future::pending().await
            }
        }
    }
}

/// What a readiness check leaves open after the child is ready: the notify
/// socket, which stays bound while the child runs. systemd keeps it so too,
/// and `systemd-notify --ready` relies on it: right after `READY=1` it
/// sends a barrier (`BARRIER=1` with an fd it waits to see closed), and a
/// service may send `STATUS=` at any time; with the socket gone, those
/// failed with ECONNREFUSED and `systemd-notify` exited 1.
#[derive(Debug, Default)]
pub(crate) struct Listener(Option<UnixDatagram>);

impl Listener {
    /// Reads the child's later notifications and drops them (an fd passed
    /// with one is closed as it is received, which ends a barrier's wait).
    /// Never resolves.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a message is read whole or not at all.
    pub(crate) async fn discard_notifications(&self) -> std::convert::Infallible {
        if let Some(socket) = &self.0 {
            let mut buf = [0u8; 512];
            // A datagram longer than the buffer is truncated: only its
            // reading matters.
            while socket.recv(&mut buf).await.is_ok() {}
            tracing::debug!("the notify socket failed after readiness; no longer read");
        }
        std::future::pending().await
    }
}

/// Binds a datagram socket in the abstract namespace, under a name unique
/// to this process and call.
fn bind_notify_socket() -> io::Result<(UnixDatagram, String)> {
    use std::os::linux::net::SocketAddrExt;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // The clock makes the name hard to guess for an unrelated process
    // (abstract sockets have no file permissions).
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "childminder/{}/{}/{nanos:08x}/notify",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let socket = std::os::unix::net::UnixDatagram::bind_addr(&addr)?;
    socket.set_nonblocking(true)?;
    Ok((UnixDatagram::from_std(socket)?, name))
}

/// Waits for a datagram holding the line `READY=1`.
async fn wait_notify(socket: &UnixDatagram) -> io::Result<()> {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).await?;
        if is_ready_message(&buf[..n]) {
            return Ok(());
        }
    }
}

/// True when one of the message's newline-separated assignments is
/// `READY=1` (sd_notify's format).
pub(crate) fn is_ready_message(message: &[u8]) -> bool {
    message
        .split(|&b| b == b'\n')
        .any(|line| line == b"READY=1")
}

/// Waits for a newline on the notification pipe (s6's protocol: anything
/// before it is ignored). End-of-file first is an error.
async fn wait_fd_line(fd: OwnedFd) -> io::Result<()> {
    let pipe = pipe::Receiver::from_owned_fd_unchecked(fd)?;
    let mut buf = [0u8; 512];
    loop {
        pipe.readable().await?;
        match pipe.try_read(&mut buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the notification fd was closed without a newline",
                ));
            }
            Ok(n) if buf[..n].contains(&b'\n') => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

/// Tries to connect until a connection is accepted, pausing 20 ms,
/// doubling to 500 ms, between attempts.
async fn wait_tcp(addr: &str) {
    let mut pause = TCP_FIRST_PAUSE;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(_) => return,
            Err(e) => tracing::trace!(addr, error = %e, "readiness: not accepting yet"),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(TCP_MAX_PAUSE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_is_one_whole_line_of_the_message() {
        assert!(is_ready_message(b"READY=1"));
        assert!(is_ready_message(b"STATUS=up\nREADY=1\n"));
        assert!(!is_ready_message(b"READY=0"));
        assert!(!is_ready_message(b"NOTREADY=1"));
        assert!(!is_ready_message(b"READY=10"));
        assert!(!is_ready_message(b""));
    }
}
