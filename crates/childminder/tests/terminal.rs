//! `Command::terminal_foreground` on the `posix_spawn` path (the fork path
//! is covered by the `childminder` command's tests): on a pseudo-terminal
//! this test opens, a shell leads a new session and runs the fixture, which
//! spawns a program with the terminal handed over.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

mod common;

use common::pty::{holds_terminal, openpty, who_has_the_terminal};

const WATCHDOG: Duration = Duration::from_secs(60);

#[test]
fn posix_spawn_hands_the_terminal_to_the_childs_group_and_takes_it_back() {
    let (mut master, slave) = openpty();
    let script = format!(
        r#""$FIXTURE" spawn-foreground sh -c 'echo ready; read x; echo "got $x"; {during}'; {after}"#,
        during = who_has_the_terminal("during"),
        after = who_has_the_terminal("after"),
    );
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script])
        .env("FIXTURE", common::fixture())
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave.try_clone().unwrap()));
    // SAFETY: setsid and ioctl are async-signal-safe; only the child runs
    // them.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut shell = cmd.spawn().unwrap();
    let shell_pid = shell.id() as i32;
    drop((cmd, slave));
    let mut typing = master.try_clone().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut shown = String::new();
    let started = Instant::now();
    let wait_for = |needle: &str, shown: &mut String| {
        while !shown.contains(needle) {
            match rx.recv_timeout(WATCHDOG.saturating_sub(started.elapsed())) {
                Ok(chunk) => shown.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => {
                    // The session's end hangs up (and so ends) what it ran.
                    // SAFETY: kill with integers, to the shell we started.
                    unsafe { libc::kill(shell_pid, libc::SIGKILL) };
                    panic!("the terminal never showed {needle:?}: {shown:?}")
                }
            }
        }
    };
    // Without the foreground, the child's group would be stopped by
    // SIGTTIN at its read, and this would never come.
    wait_for("ready", &mut shown);
    typing.write_all(b"hello\n").unwrap();
    wait_for("got hello", &mut shown);
    wait_for("exit 0", &mut shown);
    assert!(shell.wait().unwrap().success(), "{shown}");
    // The shell has ended: read what is left until the terminal closes.
    drop(typing);
    let _ = reader.join();
    shown.extend(
        rx.try_iter()
            .map(|chunk| String::from_utf8_lossy(&chunk).into_owned()),
    );
    assert!(
        holds_terminal(&shown, "during"),
        "the child's group had no terminal: {shown}"
    );
    assert!(
        holds_terminal(&shown, "after"),
        "the terminal was not given back: {shown}"
    );
}
