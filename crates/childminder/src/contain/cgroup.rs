//! cgroup v2 containment: the child runs in a new cgroup of its own,
//! entered before its first instruction, so nothing it forks can be
//! outside, whatever `setsid` or double-fork it does. Ending it is the
//! first signal to every member, then `cgroup.kill`; "everything has
//! exited" is the `populated 0` of `cgroup.events`, seen as an inotify
//! event. The cgroup is removed afterwards, with any directory childminder
//! created for it.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

use crate::signal::Signal;
use crate::sys;

/// Where and how a child gets a cgroup of its own
/// ([`Command::cgroup`](crate::Command::cgroup)).
///
/// # Examples
///
/// ```
/// use childminder::{Cgroup, Command};
///
/// let mut cmd = Command::new("make");
/// // Under this process's own cgroup v2 directory; if none is writable,
/// // fall back to the process group and the subreaper.
/// cmd.cgroup(Cgroup::new().fallback(true));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cgroup {
    pub(crate) parent: Option<PathBuf>,
    pub(crate) fallback: bool,
}

impl Cgroup {
    /// A new cgroup under this process's own cgroup v2 directory (found
    /// from `/proc/self/cgroup` and the cgroup2 mount in
    /// `/proc/self/mountinfo`), no fallback.
    ///
    /// # Examples
    ///
    /// ```
    /// let cg = childminder::Cgroup::new();
    /// ```
    pub fn new() -> Cgroup {
        Cgroup::default()
    }

    /// Creates the child's cgroup under `dir` instead, a directory of a
    /// cgroup v2 mount (a delegated subtree, say). Missing directories are
    /// created, and removed again afterwards. A `dir` that is not an
    /// absolute path inside the cgroup v2 mount (one with a `..` component
    /// counts as outside) is refused before anything
    /// is made ([`Error::CgroupUnavailable`](crate::Error::CgroupUnavailable),
    /// or the fallback).
    ///
    /// # Examples
    ///
    /// ```
    /// let cg = childminder::Cgroup::new().parent("/sys/fs/cgroup/jobs");
    /// ```
    pub fn parent(mut self, dir: impl Into<PathBuf>) -> Cgroup {
        self.parent = Some(dir.into());
        self
    }

    /// With `true`, when no cgroup can be created (no cgroup v2, no write
    /// access, no delegation) the child runs with its process group and
    /// the subreaper ([`Command::subreaper`](crate::Command::subreaper),
    /// with what that changes for the program) instead of failing, and
    /// [`Containment::cgroup_fallback`](crate::Containment::cgroup_fallback)
    /// says why. Default `false`: [`Error::CgroupUnavailable`](crate::Error::CgroupUnavailable).
    ///
    /// # Examples
    ///
    /// ```
    /// let cg = childminder::Cgroup::new().fallback(true);
    /// ```
    pub fn fallback(mut self, enable: bool) -> Cgroup {
        self.fallback = enable;
        self
    }
}

/// The cgroup's resource figures, read when everything in it has ended:
/// part of [`Containment`](crate::Containment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CgroupUsage {
    /// The cgroup's directory (removed by now).
    pub path: PathBuf,
    /// CPU time of every process that ran in it (`usage_usec` of
    /// `cpu.stat`), `None` in a result seen before the end.
    pub cpu_usage: Option<Duration>,
    /// The peak of its memory use in bytes (`memory.peak`), where the
    /// memory controller is enabled for it (the parent delegates `memory`
    /// in `cgroup.subtree_control`); else `None`.
    pub memory_peak: Option<u64>,
}

/// Why no cgroup could be used: what was tried, and the OS error.
#[derive(Debug)]
pub(crate) struct Unavailable {
    pub reason: String,
    pub source: io::Error,
}

impl Unavailable {
    fn new(reason: impl Into<String>, source: io::Error) -> Unavailable {
        Unavailable {
            reason: reason.into(),
            source,
        }
    }
}

/// The cgroup2 mount point and its root (the path in the hierarchy that
/// the mount shows), from `/proc/self/mountinfo`; the answer is cached,
/// a failure to read it is not (out of fds, it is read again next time:
/// an acceptance run caught one EMFILE turning cgroups off for good).
fn cgroup2_mount() -> io::Result<Option<&'static (PathBuf, String)>> {
    static MOUNT: OnceLock<Option<(PathBuf, String)>> = OnceLock::new();
    if let Some(mount) = MOUNT.get() {
        return Ok(mount.as_ref());
    }
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    Ok(MOUNT
        .get_or_init(|| info.lines().find_map(parse_mountinfo_line))
        .as_ref())
}

/// `(mount point, root)` of a mountinfo line whose type is cgroup2.
fn parse_mountinfo_line(line: &str) -> Option<(PathBuf, String)> {
    let (before, after) = line.split_once(" - ")?;
    if after.split_whitespace().next()? != "cgroup2" {
        return None;
    }
    let mut fields = before.split_whitespace();
    let root = unescape_mountinfo(fields.nth(3)?);
    let mount_point = unescape_mountinfo(fields.next()?);
    Some((PathBuf::from(mount_point), root))
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).filter(|_| bytes[i] == b'\\');
        match octal.and_then(|o| u8::from_str_radix(std::str::from_utf8(o).ok()?, 8).ok()) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// This process's cgroup v2 directory.
fn own_cgroup_dir() -> Result<PathBuf, Unavailable> {
    let (mount, root) = mounted_cgroup2()?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| Unavailable::new("reading /proc/self/cgroup", e))?;
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| {
            Unavailable::new(
                "this process has no cgroup v2 membership",
                io::Error::from_raw_os_error(libc::ENOENT),
            )
        })?;
    // The path is relative to our cgroup namespace's root, which is what
    // the mount shows from its root on.
    let relative = path.strip_prefix(root.as_str()).unwrap_or(path);
    Ok(mount.join(relative.trim_start_matches('/')))
}

/// The cgroup2 mount point and its root, or why there is none.
fn mounted_cgroup2() -> Result<&'static (PathBuf, String), Unavailable> {
    cgroup2_mount()
        .map_err(|e| Unavailable::new("reading /proc/self/mountinfo", e))?
        .ok_or_else(|| {
            Unavailable::new(
                "no cgroup v2 hierarchy is mounted (cgroup v1 only?)",
                io::Error::from_raw_os_error(libc::ENOENT),
            )
        })
}

/// The parent directory the caller named, checked to lie in the cgroup2
/// mount before anything is made: its missing directories are created
/// (and removed afterwards), and elsewhere they would be made on whatever
/// filesystem it names (an acceptance run's `--cgroup-parent /nonexistent`
/// made and removed `/nonexistent`, then blamed a missing `cgroup.kill`).
fn named_parent(dir: &Path) -> Result<PathBuf, Unavailable> {
    let (mount, _) = mounted_cgroup2()?;
    // `..` would climb out of the mount while the path still starts with
    // it (`<mount>/../../tmp/x` was made on /tmp).
    let climbs = dir
        .components()
        .any(|c| c == std::path::Component::ParentDir);
    if dir.is_absolute() && !climbs && dir.starts_with(mount) {
        Ok(dir.to_path_buf())
    } else {
        Err(Unavailable::new(
            format!(
                "{} is not in the cgroup v2 hierarchy (mounted at {})",
                dir.display(),
                mount.display()
            ),
            io::Error::from_raw_os_error(libc::ENOTSUP),
        ))
    }
}

/// A cgroup made for one child, removed when done with (or dropped).
#[derive(Debug)]
pub(crate) struct Leaf {
    path: PathBuf,
    /// Directories created above it, deepest first.
    created_parents: Vec<PathBuf>,
    removed: Mutex<bool>,
}

impl Leaf {
    /// Creates `<parent>/childminder-<our pid>-<n>`.
    pub(crate) fn create(options: &Cgroup) -> Result<Leaf, Unavailable> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let parent = match &options.parent {
            Some(dir) => named_parent(dir)?,
            None => own_cgroup_dir()?,
        };
        let created_parents = create_parents(&parent)?;
        // Our pid is not unique beside the parent: processes in other pid
        // namespaces share it (every container's `init` is pid 1), and a
        // SIGKILLed supervisor leaves its cgroup behind (an acceptance run
        // saw a second PID-1 `init --cgroup` refused with EEXIST). A name
        // taken is skipped; `mkdir` decides atomically who gets one.
        const NAMES_TRIED: u32 = 1000;
        let mut tried = 0;
        let path = loop {
            let name = format!(
                "childminder-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            let path = parent.join(&name);
            match std::fs::create_dir(&path) {
                Ok(()) => break path,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && tried < NAMES_TRIED => {
                    tried += 1;
                }
                Err(e) => {
                    remove_dirs(&created_parents);
                    return Err(Unavailable::new(
                        format!("creating the cgroup {}", path.display()),
                        e,
                    ));
                }
            }
        };
        let fail =
            |what: &str, e: io::Error| Unavailable::new(format!("{what} {}", path.display()), e);
        let cleanup = |e: Unavailable| {
            let _ = std::fs::remove_dir(&path);
            remove_dirs(&created_parents);
            e
        };
        if !path.join("cgroup.kill").exists() {
            // Not cgroup v2, or a kernel before 5.14.
            return Err(cleanup(fail(
                "no cgroup.kill (not a cgroup v2 directory, or Linux before 5.14) in",
                io::Error::from_raw_os_error(libc::ENOTSUP),
            )));
        }
        let leaf = Leaf {
            path: path.clone(),
            created_parents,
            removed: Mutex::new(false),
        };
        // Checked now, so no write access is this error rather than a
        // failed spawn (dropping the leaf removes it again).
        leaf.open_procs()
            .map_err(|e| fail("opening cgroup.procs of", e))?;
        Ok(leaf)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// `cgroup.procs` open for writing (close-on-exec): the child writes
    /// `0` to it before exec.
    pub(crate) fn open_procs(&self) -> io::Result<OwnedFd> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(self.path.join("cgroup.procs"))
            .map(OwnedFd::from)
    }

    /// The pids in `cgroup.procs` now, of the cgroup and of every cgroup
    /// the child made inside it (zombies are not listed).
    fn members(&self) -> io::Result<Vec<u32>> {
        let mut pids = read_procs(&self.path)?;
        // The child's own cgroups: one it made unreadable (a threaded
        // cgroup's cgroup.procs is EOPNOTSUPP, a chmod is EACCES) must not
        // cost every other member its first signal; cgroup.kill reaches
        // it anyway.
        for dir in subgroups(&self.path) {
            match read_procs(&dir) {
                Ok(more) => pids.extend(more),
                Err(e) => {
                    tracing::debug!(cgroup = %dir.display(), error = %e, "a cgroup the child made cannot be listed");
                }
            }
        }
        // A process that moved between cgroups during the walk is listed
        // twice: one signal each.
        pids.sort_unstable();
        pids.dedup();
        Ok(pids)
    }

    /// Sends `sig` to every member, each through a pidfd. A pidfd opened
    /// by pid names whoever had the pid then; it is used only if the pid
    /// is still listed afterwards, which proves that process a member
    /// (a live process keeps its pid; a dead one ignores the signal).
    /// Returns whether any member was signalled.
    pub(crate) fn signal_members(&self, sig: Signal) -> io::Result<bool> {
        if sig == Signal::KILL {
            return self.kill();
        }
        Ok(self
            .while_ours(|| self.signal_each_member(sig))?
            .unwrap_or(false))
    }

    /// Runs `act` unless the cgroup was removed, holding its removal off
    /// meanwhile: once removed, its path may name someone else's cgroup (a
    /// childminder's of another pid namespace, with the same pid, may make
    /// one of the same name).
    fn while_ours<T>(&self, act: impl FnOnce() -> io::Result<T>) -> io::Result<Option<T>> {
        let removed = self.removed.lock().unwrap_or_else(|e| e.into_inner());
        if *removed {
            return Ok(None);
        }
        act().map(Some)
    }

    fn signal_each_member(&self, sig: Signal) -> io::Result<bool> {
        let opened: Vec<(u32, OwnedFd)> = self
            .members()?
            .into_iter()
            .filter_map(|pid| Some((pid, sys::pidfd_open(pid).ok()?)))
            .collect();
        let still = self.members()?;
        let mut sent = false;
        for (pid, fd) in opened.iter().filter(|(pid, _)| still.contains(pid)) {
            match sys::pidfd_signal(fd.as_fd(), sig) {
                Ok(()) => sent = true,
                Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {}
                Err(e) => {
                    tracing::warn!(pid, signal = %sig, error = %e, "cgroup member: signal failed");
                }
            }
        }
        Ok(sent)
    }

    /// `cgroup.kill`: SIGKILL to every member, atomically, forks included.
    /// Returns whether it had members.
    pub(crate) fn kill(&self) -> io::Result<bool> {
        let killed = self.while_ours(|| {
            let populated = self.populated()?;
            std::fs::write(self.path.join("cgroup.kill"), b"1")?;
            Ok(populated)
        })?;
        Ok(killed.unwrap_or(false))
    }

    /// `populated` of `cgroup.events`: whether any process (other than a
    /// zombie) is in it.
    pub(crate) fn populated(&self) -> io::Result<bool> {
        let events = std::fs::read_to_string(self.path.join("cgroup.events"))?;
        Ok(events
            .lines()
            .any(|l| l.split_whitespace().eq(["populated", "1"])))
    }

    /// Watches `cgroup.events`; must be called inside a tokio runtime.
    pub(crate) fn watch(&self) -> io::Result<EventsWatch> {
        let fd = sys::watch_modify(&self.path.join("cgroup.events"))?;
        Ok(EventsWatch {
            fd: sys::register_pidfd(fd)?,
        })
    }

    /// Waits for `populated 0`, as an event.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only observes.
    pub(crate) async fn emptied(&self, watch: &EventsWatch) -> io::Result<()> {
        loop {
            if !self.populated()? {
                return Ok(());
            }
            watch.changed().await?;
        }
    }

    /// Blocks the thread until `populated 0` or `limit` passed: for the
    /// last-resort path and the exit handler, where no runtime is left to
    /// await on. Whether it emptied.
    pub(crate) fn wait_emptied_blocking(&self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        // Watched before the check, so an event between them is not missed.
        let Ok(watch) = sys::watch_modify(&self.path.join("cgroup.events")) else {
            return false;
        };
        loop {
            match self.populated() {
                Ok(false) => return true,
                Ok(true) => {}
                Err(_) => return false,
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() || !matches!(sys::wait_readable(watch.as_fd(), left), Ok(true)) {
                return false;
            }
            let _ = sys::drain_inotify(watch.as_fd());
        }
    }

    /// The figures of everything that ran in it.
    pub(crate) fn usage(&self) -> CgroupUsage {
        let cpu_usage = std::fs::read_to_string(self.path.join("cpu.stat"))
            .ok()
            .and_then(|stat| {
                stat.lines()
                    .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse().ok())
            })
            .map(Duration::from_micros);
        let memory_peak = std::fs::read_to_string(self.path.join("memory.peak"))
            .ok()
            .and_then(|peak| peak.trim().parse().ok());
        CgroupUsage {
            path: self.path.clone(),
            cpu_usage,
            memory_peak,
        }
    }

    /// Removes the cgroup (it must be empty: zombies do not count), the
    /// cgroups the child made inside it, and the directories created for it.
    pub(crate) fn remove(&self) -> io::Result<()> {
        let mut removed = self.removed.lock().unwrap_or_else(|e| e.into_inner());
        if *removed {
            return Ok(());
        }
        remove_with_subgroups(&self.path)?;
        *removed = true;
        remove_dirs(&self.created_parents);
        Ok(())
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        // Failure paths end here (a spawn that failed); the supervision
        // removes it explicitly before it finishes.
        if let Err(e) = self.remove() {
            tracing::warn!(cgroup = %self.path.display(), error = %e, "removing the cgroup failed");
        }
    }
}

/// Creates `dir` and any missing parent; returns the ones created, deepest
/// first.
fn create_parents(dir: &Path) -> Result<Vec<PathBuf>, Unavailable> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.exists() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    let mut created = Vec::new();
    for dir in missing.iter().rev() {
        if let Err(e) = std::fs::create_dir(dir) {
            remove_dirs(&created);
            return Err(Unavailable::new(
                format!("creating the cgroup {}", dir.display()),
                e,
            ));
        }
        created.insert(0, dir.clone());
    }
    Ok(created)
}

/// The pids in `dir`'s `cgroup.procs`.
fn read_procs(dir: &Path) -> io::Result<Vec<u32>> {
    let list = std::fs::read_to_string(dir.join("cgroup.procs"))?;
    Ok(list.lines().filter_map(|l| l.parse().ok()).collect())
}

/// The cgroups below `dir` (a child may make cgroups of its own in its
/// cgroup: `systemd-run --scope`, a container runtime), parents before
/// their children. Walked with a list, not recursion, and each directory
/// closed before the next is opened: a hostile depth costs neither stack
/// nor fds. A directory that cannot be read is listed without what is
/// below it.
fn subgroups(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut next = 0;
    let mut reading = dir.to_path_buf();
    loop {
        if let Ok(entries) = std::fs::read_dir(&reading) {
            // Only directories are cgroups; the files in them go with them.
            found.extend(
                entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path()),
            );
        }
        let Some(dir) = found.get(next) else {
            return found;
        };
        reading = dir.clone();
        next += 1;
    }
}

/// Removes the cgroup `dir` after the ones below it, deepest first: a
/// cgroup with children cannot be removed. `cgroup.kill` and `populated`
/// cover the whole subtree, so they are empty by now. Each is tried even
/// if one below it failed, so that the error returned is the first.
fn remove_with_subgroups(dir: &Path) -> io::Result<()> {
    let mut first_error = None;
    for sub in subgroups(dir).iter().rev() {
        if let Err(e) = std::fs::remove_dir(sub) {
            first_error.get_or_insert(e);
        }
    }
    match (std::fs::remove_dir(dir), first_error) {
        (Ok(()), _) => Ok(()),
        (Err(_), Some(e)) | (Err(e), None) => Err(e),
    }
}

fn remove_dirs(deepest_first: &[PathBuf]) {
    for dir in deepest_first {
        if let Err(e) = std::fs::remove_dir(dir) {
            tracing::debug!(cgroup = %dir.display(), error = %e, "leaving a cgroup created for the child (not empty?)");
            return;
        }
    }
}

/// An inotify watch on `cgroup.events`, registered with the runtime.
pub(crate) struct EventsWatch {
    fd: AsyncFd<OwnedFd>,
}

impl EventsWatch {
    /// Resolves at the next change of `cgroup.events`.
    async fn changed(&self) -> io::Result<()> {
        let mut guard = self.fd.readable().await?;
        sys::drain_inotify(self.fd.get_ref().as_fd())?;
        guard.clear_ready();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_in_mountinfo_lines() {
        let v1 = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu";
        let v2 = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";
        let spaced = r"41 31 0:38 /a\040b /mnt/my\040cg rw shared:9 - cgroup2 none rw";
        assert_eq!(parse_mountinfo_line(v1), None);
        assert_eq!(
            parse_mountinfo_line(v2),
            Some((PathBuf::from("/sys/fs/cgroup/unified"), "/".to_owned()))
        );
        assert_eq!(
            parse_mountinfo_line(spaced),
            Some((PathBuf::from("/mnt/my cg"), "/a b".to_owned()))
        );
    }

    #[test]
    fn unescapes_only_octal_triples() {
        assert_eq!(unescape_mountinfo(r"a\040b\\c\12"), r"a b\\c\12");
    }

    /// "Empty" must be the kernel's event, not a check on a timer: on a
    /// paused clock (which moves only to fire a timer) the wait ends with
    /// the clock where it started.
    #[test]
    fn emptied_is_an_inotify_event_not_a_polling_loop() {
        let Ok(leaf) = Leaf::create(&Cgroup::new()) else {
            eprintln!("SKIPPED emptied_is_an_inotify_event: no writable cgroup v2 here");
            return;
        };
        let mut member = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::fs::write(leaf.path().join("cgroup.procs"), member.id().to_string()).unwrap();
        assert!(leaf.populated().unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(async {
            let watch = leaf.watch().unwrap();
            let start = tokio::time::Instant::now();
            let kill = async {
                // Once the wait below is parked on the event.
                tokio::task::yield_now().await;
                leaf.kill().unwrap();
            };
            let (emptied, ()) = tokio::join!(leaf.emptied(&watch), kill);
            emptied.unwrap();
            assert_eq!(tokio::time::Instant::now(), start);
        });
        assert!(!leaf.populated().unwrap());
        member.wait().unwrap();
        let path = leaf.path().to_owned();
        leaf.remove().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn a_leaf_is_created_joined_and_removed() {
        let Ok(leaf) = Leaf::create(&Cgroup::new()) else {
            eprintln!("skipped: no writable cgroup v2 here");
            return;
        };
        assert!(leaf.path().is_dir());
        assert!(!leaf.populated().unwrap());
        let path = leaf.path().to_owned();
        drop(leaf);
        assert!(!path.exists());
    }
}
