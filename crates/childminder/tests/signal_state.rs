//! The signal state a child starts with, whatever the caller's: an empty
//! signal mask on both spawn paths, SIGPIPE at its default unless asked to
//! keep the caller's, and a caller that ignores SIGCHLD.

mod common;

use childminder::Command;
use common::LeakCheck;

/// The SigBlk and SigIgn masks (hex) of `grep` run as the child.
fn child_masks(kill_on_parent_death: bool) -> (u64, u64) {
    let mut cmd = Command::new("grep");
    cmd.args(["-E", "^Sig(Blk|Ign):", "/proc/self/status"])
        .kill_on_parent_death(kill_on_parent_death);
    let out = cmd.output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let field = |name: &str| {
        let line = text.lines().find(|l| l.starts_with(name)).unwrap();
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    (field("SigBlk:"), field("SigIgn:"))
}

/// Blocks `signals` in the calling thread for the life of the guard.
struct Blocked(libc::sigset_t);

impl Blocked {
    fn new(signals: &[i32]) -> Blocked {
        // SAFETY: the sets are initialised by sigemptyset before use;
        // pthread_sigmask changes only this thread's mask.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &s in signals {
                libc::sigaddset(&mut set, s);
            }
            assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old), 0);
            Blocked(old)
        }
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in new(), for this thread only.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

#[test]
fn a_caller_that_blocks_sigterm_does_not_hand_its_mask_to_the_child() {
    Command::new("true").run().unwrap();
    let leak = LeakCheck::new();
    let _blocked = Blocked::new(&[libc::SIGTERM, libc::SIGUSR1, libc::SIGINT]);
    for kill_on_parent_death in [false, true] {
        let (blocked, _) = child_masks(kill_on_parent_death);
        assert_eq!(
            blocked, 0,
            "kill_on_parent_death({kill_on_parent_death}): the child's SigBlk is {blocked:x}"
        );
    }
    leak.assert_clean();
}

const SIGPIPE_BIT: u64 = 1 << (libc::SIGPIPE - 1);

/// Caught by an acceptance run (an `up` process with fd readiness, which
/// takes the `posix_spawn` path, could not be ended by signal 33): glibc's
/// `posix_spawn` sets its internal signals, 32 and 33, to SIG_IGN in the
/// child, and exec keeps them ignored, for it and all it starts (std's
/// children too). Both paths start the child with nothing ignored that the
/// caller did not ignore. (Both test runners start this binary through
/// std's `posix_spawn`, so it has signal 32 ignored itself, which the fork
/// path passed on until it reset it.)
#[test]
fn glibc_internal_signals_are_not_left_ignored_in_the_child() {
    Command::new("true").run().unwrap();
    let leak = LeakCheck::new();
    for kill_on_parent_death in [false, true] {
        let (_, ignored) = child_masks(kill_on_parent_death);
        // Only 32 and 33: a runner started under `nohup` or `trap '' INT`
        // passes those on, as it should.
        assert_eq!(
            ignored & (0b11 << 31),
            0,
            "kill_on_parent_death({kill_on_parent_death}): the child's SigIgn is {ignored:x}"
        );
    }
    leak.assert_clean();
}

#[test]
fn sigpipe_starts_at_its_default_unless_inherit_sigpipe() {
    // The Rust runtime ignores SIGPIPE in this (the caller's) process.
    // SAFETY: sigaction with a null new action only reads.
    let ignored_here = unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old);
        old.sa_sigaction == libc::SIG_IGN
    };
    assert!(ignored_here, "the test harness should ignore SIGPIPE");
    Command::new("true").run().unwrap();
    let leak = LeakCheck::new();
    for kill_on_parent_death in [false, true] {
        for inherit in [false, true] {
            let mut cmd = Command::new("grep");
            cmd.args(["^SigIgn:", "/proc/self/status"])
                .kill_on_parent_death(kill_on_parent_death)
                .inherit_sigpipe(inherit);
            let text = String::from_utf8(cmd.output().unwrap().stdout).unwrap();
            let ignored = u64::from_str_radix(text.split_whitespace().nth(1).unwrap(), 16).unwrap();
            assert_eq!(
                ignored & SIGPIPE_BIT != 0,
                inherit,
                "kill_on_parent_death({kill_on_parent_death}), inherit_sigpipe({inherit}): SigIgn {ignored:x}"
            );
        }
    }
    leak.assert_clean();
}

/// Set in the copy of this test binary that runs with SIGCHLD ignored.
const IGNORING_SIGCHLD: &str = "CHILDMINDER_TEST_IGNORING_SIGCHLD";

/// Started with SIGCHLD ignored (`trap '' CHLD`), a spawn failed later with
/// a confusing "No child processes" (ECHILD) from the wait; it is now a
/// typed error before anything is spawned. Ignoring SIGCHLD is
/// process-wide, so the check runs in a copy of this test binary.
#[test]
fn a_caller_that_ignores_sigchld_gets_a_typed_error_not_echild() {
    if std::env::var_os(IGNORING_SIGCHLD).is_some() {
        // SAFETY: SIG_IGN installs no handler code.
        unsafe { libc::signal(libc::SIGCHLD, libc::SIG_IGN) };
        for kill_on_parent_death in [false, true] {
            let err = Command::new("true")
                .kill_on_parent_death(kill_on_parent_death)
                .run()
                .unwrap_err();
            assert!(
                matches!(err, childminder::Error::ChildrenReapedByTheKernel { .. }),
                "{err:?}"
            );
            assert!(err.to_string().contains("ignores SIGCHLD"), "{err}");
        }
        return;
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_caller_that_ignores_sigchld_gets_a_typed_error_not_echild",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(IGNORING_SIGCHLD, "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("1 passed"), "the copy ran no test: {text}");
    // With SIGCHLD back at its default, the same spawn works.
    assert!(Command::new("true").run().unwrap().success());
}
