//! Signal numbers, with the names people type.

use std::fmt;
use std::str::FromStr;

/// A POSIX signal number, as sent by [`Process::signal`](crate::Process::signal)
/// or reported in [`ExitStatus::Signaled`](crate::ExitStatus::Signaled).
///
/// childminder keeps its own small type instead of re-exporting a syscall
/// crate's, so the public API does not change when those crates do.
///
/// # Examples
///
/// ```
/// use childminder::Signal;
///
/// assert_eq!("TERM".parse::<Signal>().unwrap(), Signal::TERM);
/// assert_eq!("sigkill".parse::<Signal>().unwrap(), Signal::KILL);
/// assert_eq!("15".parse::<Signal>().unwrap().as_raw(), 15);
/// assert_eq!(Signal::INT.name(), Some("SIGINT"));
/// // Real-time signals, as kill(1) names them.
/// let rt = "RTMIN+1".parse::<Signal>().unwrap();
/// assert_eq!(rt.as_raw(), libc::SIGRTMIN() + 1);
/// assert_eq!(rt.to_string(), "SIGRTMIN+1");
/// assert_eq!("sigrtmax-2".parse::<Signal>().unwrap().as_raw(), libc::SIGRTMAX() - 2);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

const NAMES: &[(&str, i32)] = &[
    ("SIGHUP", libc::SIGHUP),
    ("SIGINT", libc::SIGINT),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGILL", libc::SIGILL),
    ("SIGTRAP", libc::SIGTRAP),
    ("SIGABRT", libc::SIGABRT),
    ("SIGBUS", libc::SIGBUS),
    ("SIGFPE", libc::SIGFPE),
    ("SIGKILL", libc::SIGKILL),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGSEGV", libc::SIGSEGV),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGPIPE", libc::SIGPIPE),
    ("SIGALRM", libc::SIGALRM),
    ("SIGTERM", libc::SIGTERM),
    ("SIGSTKFLT", libc::SIGSTKFLT),
    ("SIGCHLD", libc::SIGCHLD),
    ("SIGCONT", libc::SIGCONT),
    ("SIGSTOP", libc::SIGSTOP),
    ("SIGTSTP", libc::SIGTSTP),
    ("SIGTTIN", libc::SIGTTIN),
    ("SIGTTOU", libc::SIGTTOU),
    ("SIGURG", libc::SIGURG),
    ("SIGXCPU", libc::SIGXCPU),
    ("SIGXFSZ", libc::SIGXFSZ),
    ("SIGVTALRM", libc::SIGVTALRM),
    ("SIGPROF", libc::SIGPROF),
    ("SIGWINCH", libc::SIGWINCH),
    ("SIGIO", libc::SIGIO),
    ("SIGPWR", libc::SIGPWR),
    ("SIGSYS", libc::SIGSYS),
];

/// Other names of the same signals that `kill(1)` and GNU `timeout -s`
/// accept: read, never written.
const ALIASES: &[(&str, i32)] = &[
    ("SIGIOT", libc::SIGABRT),
    ("SIGPOLL", libc::SIGIO),
    ("SIGCLD", libc::SIGCHLD),
];

impl Signal {
    /// `SIGHUP`.
    pub const HUP: Signal = Signal(libc::SIGHUP);
    /// `SIGINT`.
    pub const INT: Signal = Signal(libc::SIGINT);
    /// `SIGQUIT`.
    pub const QUIT: Signal = Signal(libc::SIGQUIT);
    /// `SIGKILL`: cannot be caught or ignored.
    pub const KILL: Signal = Signal(libc::SIGKILL);
    /// `SIGUSR1`.
    pub const USR1: Signal = Signal(libc::SIGUSR1);
    /// `SIGUSR2`.
    pub const USR2: Signal = Signal(libc::SIGUSR2);
    /// `SIGSEGV`.
    pub const SEGV: Signal = Signal(libc::SIGSEGV);
    /// `SIGPIPE`.
    pub const PIPE: Signal = Signal(libc::SIGPIPE);
    /// `SIGTERM`: the polite request to stop, first step of the escalation.
    pub const TERM: Signal = Signal(libc::SIGTERM);
    /// `SIGCONT`.
    pub const CONT: Signal = Signal(libc::SIGCONT);
    /// `SIGSTOP`.
    pub const STOP: Signal = Signal(libc::SIGSTOP);

    /// The signal with this number.
    ///
    /// # Errors
    ///
    /// Returns `None` unless `1 <= raw <= SIGRTMAX`.
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::Signal;
    /// assert_eq!(Signal::from_raw(9), Some(Signal::KILL));
    /// assert_eq!(Signal::from_raw(0), None);
    /// ```
    pub fn from_raw(raw: i32) -> Option<Signal> {
        (1..=libc::SIGRTMAX()).contains(&raw).then_some(Signal(raw))
    }

    /// The signal number.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(childminder::Signal::TERM.as_raw(), 15);
    /// ```
    pub fn as_raw(self) -> i32 {
        self.0
    }

    /// The conventional name, such as `"SIGTERM"`, or `None` for
    /// real-time signals.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(childminder::Signal::KILL.name(), Some("SIGKILL"));
    /// ```
    pub fn name(self) -> Option<&'static str> {
        NAMES
            .iter()
            .find(|&&(_, n)| n == self.0)
            .map(|&(name, _)| name)
    }
}

/// `SIGTERM`; `SIGRTMIN`, then `SIGRTMIN+N`, for a real-time signal (as
/// `kill -l` names the first); `SIG32` for a number with no name (glibc
/// keeps 32 and 33 for itself).
impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None if self.0 == libc::SIGRTMIN() => f.write_str("SIGRTMIN"),
            None if self.0 > libc::SIGRTMIN() => {
                write!(f, "SIGRTMIN+{}", self.0 - libc::SIGRTMIN())
            }
            None => write!(f, "SIG{}", self.0),
        }
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The error of parsing a [`Signal`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown signal {0:?}: expected a name such as TERM or SIGTERM, RTMIN+N or RTMAX-N, \
     or a number from 1 to 64"
)]
pub struct ParseSignalError(String);

impl FromStr for Signal {
    type Err = ParseSignalError;

    /// Accepts `TERM`, `SIGTERM`, `sigterm` and `15` alike, the other
    /// names `kill(1)` knows (`IOT` for `ABRT`, `POLL` for `IO`, `CLD` for
    /// `CHLD`), and the real-time signals as `kill(1)` names them: `RTMIN`,
    /// `RTMIN+N`, `RTMAX`, `RTMAX-N` (with or without `SIG`, any case),
    /// within `SIGRTMIN..=SIGRTMAX`.
    fn from_str(s: &str) -> Result<Signal, ParseSignalError> {
        let err = || ParseSignalError(s.to_owned());
        let trimmed = s.trim();
        if let Ok(raw) = trimmed.parse::<i32>() {
            return Signal::from_raw(raw).ok_or_else(err);
        }
        let upper = trimmed.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some(raw) = realtime(bare) {
            return Signal::from_raw(raw)
                .filter(|_| (libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&raw))
                .ok_or_else(err);
        }
        NAMES
            .iter()
            .chain(ALIASES)
            .find(|&&(name, _)| &name[3..] == bare)
            .map(|&(_, raw)| Signal(raw))
            .ok_or_else(err)
    }
}

/// The number of `RTMIN`, `RTMIN+N`, `RTMAX` or `RTMAX-N` (upper case,
/// without `SIG`), range unchecked; `None` for any other text.
fn realtime(bare: &str) -> Option<i32> {
    let offset = |digits: &str| -> Option<i32> {
        if digits.is_empty() || digits.len() > 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    if let Some(rest) = bare.strip_prefix("RTMIN") {
        return match rest.strip_prefix('+') {
            None if rest.is_empty() => Some(libc::SIGRTMIN()),
            Some(n) => Some(libc::SIGRTMIN() + offset(n)?),
            None => None,
        };
    }
    let rest = bare.strip_prefix("RTMAX")?;
    match rest.strip_prefix('-') {
        None if rest.is_empty() => Some(libc::SIGRTMAX()),
        Some(n) => Some(libc::SIGRTMAX() - offset(n)?),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips() {
        for &(name, raw) in NAMES {
            let sig: Signal = name[3..].parse().unwrap();
            assert_eq!(sig.as_raw(), raw);
            assert_eq!(sig.name().unwrap(), name);
            assert_eq!(sig.name().unwrap().parse::<Signal>().unwrap(), sig);
        }
    }

    /// Found in acceptance: GNU `timeout -s` takes these, `run -s` did not.
    #[test]
    fn aliases_parse_to_their_signal_and_display_by_its_name() {
        for (text, name) in [("IOT", "SIGABRT"), ("sigpoll", "SIGIO"), ("CLD", "SIGCHLD")] {
            let sig: Signal = text.parse().unwrap();
            assert_eq!(sig.name(), Some(name), "{text}");
        }
    }

    #[test]
    fn realtime_names_parse_and_display() {
        let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
        for n in 0..=(max - min) {
            for text in [format!("RTMIN+{n}"), format!("sigrtmin+{n}")] {
                let sig: Signal = text.parse().unwrap();
                assert_eq!(sig.as_raw(), min + n, "{text}");
                let name = match n {
                    0 => "SIGRTMIN".to_owned(),
                    n => format!("SIGRTMIN+{n}"),
                };
                assert_eq!(sig.to_string(), name);
                assert_eq!(sig.to_string().parse::<Signal>(), Ok(sig));
            }
            let sig: Signal = format!("SIGRTMAX-{n}").parse().unwrap();
            assert_eq!(sig.as_raw(), max - n);
        }
        assert_eq!("RTMIN".parse::<Signal>().unwrap().as_raw(), min);
        assert_eq!("rtmax".parse::<Signal>().unwrap().as_raw(), max);
        assert_eq!(Signal(32).to_string(), "SIG32");
        let past = max - min + 1;
        for bad in [
            format!("RTMIN+{past}"),
            format!("RTMAX-{past}"),
            "RTMIN-1".to_owned(),
            "RTMAX+1".to_owned(),
            "RTMIN+".to_owned(),
            "RTMIN+-1".to_owned(),
            "RTMIN+1x".to_owned(),
            "RTMIN1".to_owned(),
            "RTMIN+99999999999".to_owned(),
        ] {
            assert!(bad.parse::<Signal>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn rejects_nonsense() {
        for bad in ["", "0", "-1", "65", "SIG", "TERMX", "1.5", "9999999999999"] {
            assert!(bad.parse::<Signal>().is_err(), "{bad:?} parsed");
        }
    }
}
