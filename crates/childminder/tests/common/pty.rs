//! A pseudo-terminal for the tests of terminal handling, shared by the
//! library's tests and the `childminder` command's (which include this file
//! by path).

use std::fs::File;
use std::os::fd::FromRawFd;

/// Opens a pseudo-terminal: (master, slave), both close-on-exec.
pub fn openpty() -> (File, File) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two fds into the integers; the name, termios
    // and window size are optional (null).
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both fds were just opened and are owned by nobody else.
    unsafe {
        libc::fcntl(master, libc::F_SETFD, libc::FD_CLOEXEC);
        libc::fcntl(slave, libc::F_SETFD, libc::FD_CLOEXEC);
        (File::from_raw_fd(master), File::from_raw_fd(slave))
    }
}

/// Shell code that prints `LABEL pgrp=P tpgid=T.`: the process group and
/// the terminal's foreground group of the shell that runs it, equal when
/// the shell holds the terminal.
pub fn who_has_the_terminal(label: &str) -> String {
    format!(r#"read -r _ _ _ _ p _ _ t _ < /proc/$$/stat; echo "{label} pgrp=$p tpgid=$t.""#)
}

/// Whether the `LABEL pgrp=P tpgid=T.` line in `shown` has P == T.
pub fn holds_terminal(shown: &str, label: &str) -> bool {
    let line = shown
        .split(&format!("{label} pgrp="))
        .nth(1)
        .unwrap_or_else(|| panic!("no {label} line in {shown:?}"));
    let line = line.split('.').next().unwrap();
    let (pgrp, tpgid) = line.split_once(" tpgid=").unwrap();
    pgrp == tpgid
}
