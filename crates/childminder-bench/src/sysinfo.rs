//! What the harness reads about itself and the machine: /proc/self/status
//! fields, CPU time, resource limits.

use std::time::Duration;

/// A field of /proc/self/status in its unit (kB for the Vm* fields).
pub fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// User + system CPU time of this whole process, and its context switches
/// (voluntary + involuntary, over all threads): a count of wake-ups.
pub fn self_usage() -> (Duration, u64) {
    // SAFETY: getrusage writes into the struct we hand it and nothing else.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        let rc = libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        assert_eq!(rc, 0, "getrusage failed");
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (
        tv(usage.ru_utime) + tv(usage.ru_stime),
        (usage.ru_nvcsw + usage.ru_nivcsw) as u64,
    )
}

/// Raises the soft limit of open files to the hard limit; returns
/// (soft before, soft after).
pub fn raise_nofile() -> (u64, u64) {
    // SAFETY: getrlimit/setrlimit read and write the struct we hand them.
    unsafe {
        let mut lim = std::mem::zeroed::<libc::rlimit>();
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        let before = lim.rlim_cur;
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return (before as u64, before as u64);
        }
        (before as u64, lim.rlim_cur as u64)
    }
}

pub fn rlimit(resource: libc::__rlimit_resource_t) -> (u64, u64) {
    // SAFETY: getrlimit writes the struct we hand it.
    unsafe {
        let mut lim = std::mem::zeroed::<libc::rlimit>();
        assert_eq!(libc::getrlimit(resource, &mut lim), 0);
        (lim.rlim_cur as u64, lim.rlim_max as u64)
    }
}

pub fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, m)| m.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "?".to_owned())
}

pub fn date_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S UTC"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|| "?".to_owned())
}
