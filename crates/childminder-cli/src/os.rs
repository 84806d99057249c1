//! childminder's own signal state, at its start and at its end: what it
//! inherited (SIGPIPE, SIGCHLD), and ending itself by the command's
//! signal. Every `unsafe` of this crate's signal handling is here, one call
//! per block.

use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::{AtomicU8, Ordering};

use childminder::Signal;

/// SIGPIPE's disposition when the process started, before the Rust runtime
/// set it to ignored for itself: unknown (never recorded), default, or
/// ignored.
static SIGPIPE_AT_START: AtomicU8 = AtomicU8::new(UNKNOWN);
const UNKNOWN: u8 = 0;
const DEFAULT: u8 = 1;
const IGNORED: u8 = 2;

/// The current disposition of `signal`, or `None` if it cannot be read.
fn disposition(signal: i32) -> Option<libc::sigaction> {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only reads the current one into `old`, a
    // plain C struct we own.
    let rc = unsafe { libc::sigaction(signal, ptr::null(), old.as_mut_ptr()) };
    // SAFETY: zero-initialised, and filled in by sigaction on success.
    (rc == 0).then(|| unsafe { old.assume_init() })
}

/// True when `signal`'s disposition is `SIG_IGN`.
pub fn is_ignored(signal: i32) -> bool {
    disposition(signal).is_some_and(|a| a.sa_sigaction == libc::SIG_IGN)
}

/// Records SIGPIPE's disposition as the parent gave it. The binary calls
/// this from an `.init_array` constructor, which glibc runs before `main`
/// and so before the Rust runtime ignores SIGPIPE (std captures `argv` on
/// Linux the same way). It only reads the disposition and stores a byte.
pub fn record_inherited_sigpipe() {
    let state = if is_ignored(libc::SIGPIPE) {
        IGNORED
    } else {
        DEFAULT
    };
    SIGPIPE_AT_START.store(state, Ordering::Relaxed);
}

/// True when the parent started childminder with SIGPIPE ignored (`trap ''
/// PIPE`): the command then gets it ignored too, as GNU `timeout` passes
/// it on. False when it was at its default, or never recorded.
pub fn sigpipe_was_ignored_at_start() -> bool {
    SIGPIPE_AT_START.load(Ordering::Relaxed) == IGNORED
}

/// Puts SIGCHLD back to its default (no `SA_NOCLDWAIT`), as GNU `timeout`
/// does at its start: started with SIGCHLD ignored (`trap '' CHLD`), the
/// kernel would reap the command by itself and its status would be lost.
/// The command inherits the default too.
///
/// # Errors
///
/// The OS error of `sigaction`.
pub fn reset_sigchld() -> std::io::Result<()> {
    // SAFETY: zeroed is a valid sigaction: SIG_DFL, no flags, empty mask.
    let default: libc::sigaction = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: installs the default disposition; no handler code is involved.
    let rc = unsafe { libc::sigaction(libc::SIGCHLD, &default, ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Ends childminder by `signal`, as GNU `timeout` does when the command
/// died by a signal: core dumps off (so a SIGQUIT or SIGSEGV of the command
/// does not also dump childminder's core), the signal's default action
/// back, the signal unblocked, then raised. Returns only if that did not
/// end the process (core dumps could not be turned off, or the signal's
/// default is not to terminate); the caller then exits with 128+N.
pub fn die_by_signal(signal: Signal) {
    if !disable_core_dumps() {
        return;
    }
    let raw = signal.as_raw();
    // SAFETY: zeroed is a valid sigaction: SIG_DFL, no flags, empty mask.
    let default: libc::sigaction = unsafe { MaybeUninit::zeroed().assume_init() };
    // SAFETY: installs the default disposition; no handler code is involved.
    unsafe { libc::sigaction(raw, &default, ptr::null_mut()) };
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set it is given.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    // SAFETY: initialised just above; sigaddset sets one bit of it.
    unsafe { libc::sigaddset(set.as_mut_ptr(), raw) };
    // SAFETY: unblocks the signal for this thread only; the set is initialised.
    unsafe { libc::pthread_sigmask(libc::SIG_UNBLOCK, set.as_ptr(), ptr::null_mut()) };
    // SAFETY: raise sends the signal to this thread; its default action
    // ends the process.
    unsafe { libc::raise(raw) };
}

/// Turns core dumps off for this process: not dumpable (which also keeps
/// a piped `core_pattern` helper away), and a core size limit of 0.
fn disable_core_dumps() -> bool {
    // SAFETY: prctl with integer arguments changes only this process.
    let not_dumpable = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } == 0;
    let no_core = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we own.
    let no_size = unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) } == 0;
    not_dumpable || no_size
}
