//! Issue 10, part 2: cgroup v2 containment. The child runs in a cgroup of
//! its own, which a double-forked daemon cannot leave; the end is TERM to
//! every member, then `cgroup.kill`, with "empty" seen as the event of
//! `cgroup.events`; the cgroup is removed afterwards. And each fallback.
//!
//! Tests that need a writable cgroup v2 print why they skip where there is
//! none (no cgroup2 mount, no write access).

mod common;
#[path = "common/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use childminder::{
    Cgroup, Command, Error, ExitStatus, Signal, discard, stdin, with_process_result,
};
use common::{LeakCheck, pid_alive};
use support::{assert_all_dead, expect_ready, fixture_cmd, line_consumer, warm_up};

const GRACE: Duration = Duration::from_millis(300);

/// The leak accounting is per process: under plain `cargo test` (tests as
/// threads of one process) the tests of this file take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a cgroup can be made here; prints why not.
fn cgroup_available(test: &str) -> bool {
    match Command::new("true").cgroup(Cgroup::new()).run() {
        Ok(_) => true,
        Err(e @ Error::CgroupUnavailable { .. }) => {
            eprintln!("SKIPPED {test}: no writable cgroup v2 here: {e}");
            false
        }
        Err(e) => panic!("probe: {e}"),
    }
}

/// The cgroup v2 path of `pid` (relative to the mount), from /proc.
fn cgroup_of(pid: i32) -> String {
    let all = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    all.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap()
        .to_owned()
}

fn ends_with_leaf(member: &str, leaf: &Path) -> bool {
    member.ends_with(&format!("/{}", leaf.file_name().unwrap().to_str().unwrap()))
}

#[test]
fn a_double_forked_daemon_stays_in_the_cgroup_and_is_ended_with_it() {
    let _serial = serial();
    warm_up();
    if !cgroup_available("a_double_forked_daemon_stays_in_the_cgroup") {
        return;
    }
    let leak = LeakCheck::new();
    let mut cmd = fixture_cmd(["daemon", "300"]);
    cmd.grace_period(Duration::from_secs(30))
        .cgroup(Cgroup::new());
    let (lines, rx) = line_consumer();
    let ((daemon, leaf), r) = with_process_result(&cmd, stdin::empty(), lines, discard, |p| {
        let daemon = expect_ready(&rx)[0];
        let at_exit = p.wait();
        let leaf = at_exit.containment.cgroup.clone().unwrap().path;
        assert!(leaf.is_dir());
        // setsid did not take it out of the cgroup.
        assert!(
            ends_with_leaf(&cgroup_of(daemon), &leaf),
            "{}",
            cgroup_of(daemon)
        );
        assert!(pid_alive(daemon));
        (daemon, leaf)
    })
    .unwrap();
    assert_eq!(r.exit, Some(ExitStatus::Exited(0)), "{r:?}");
    let usage = r.containment.cgroup.clone().unwrap();
    assert_eq!(usage.path, leaf);
    assert!(usage.cpu_usage.is_some(), "{r:?}");
    assert!(!leaf.exists(), "the cgroup was not removed");
    assert_all_dead(&[daemon]);
    leak.assert_clean();
}

#[test]
fn a_tree_of_300_that_ignores_term_is_ended_by_cgroup_kill() {
    let _serial = serial();
    warm_up();
    if !cgroup_available("a_tree_of_300_that_ignores_term") {
        return;
    }
    let leak = LeakCheck::new();
    let mut cmd = fixture_cmd(["daemon", "300", "ignore-term", "300"]);
    cmd.grace_period(GRACE).cgroup(Cgroup::new());
    let (lines, rx) = line_consumer();
    let mut swept_at = None;
    let (leaf, r) = with_process_result(&cmd, stdin::empty(), lines, discard, |p| {
        expect_ready(&rx);
        let leaf = p.wait().containment.cgroup.unwrap().path;
        let members = std::fs::read_to_string(leaf.join("cgroup.procs")).unwrap();
        assert_eq!(members.lines().count(), 301, "the daemon and its 300");
        swept_at = Some(Instant::now());
        leaf
    })
    .unwrap();
    let sweep = swept_at.unwrap().elapsed();
    assert!(
        sweep >= GRACE,
        "cgroup.kill came before the grace: {sweep:?}"
    );
    assert!(sweep < GRACE + Duration::from_secs(10), "{sweep:?}");
    assert!(!leaf.exists(), "the cgroup was not removed");
    assert!(r.containment.cgroup.unwrap().cpu_usage.is_some());
    leak.assert_clean();
}

#[test]
fn the_deadline_reaches_a_daemon_that_left_the_group_while_the_child_runs() {
    let _serial = serial();
    warm_up();
    if !cgroup_available("the_deadline_reaches_a_daemon") {
        return;
    }
    let leak = LeakCheck::new();
    let script = format!(
        "{fx} daemon 300 ignore-term && exec {fx} sleep 300",
        fx = common::fixture()
    );
    let mut cmd = support::marked("sh");
    cmd.args(["-c", &script])
        .grace_period(GRACE)
        .deadline(Duration::from_millis(500))
        .cgroup(Cgroup::new());
    let (lines, rx) = line_consumer();
    let (daemon, r) = with_process_result(&cmd, stdin::empty(), lines, discard, |p| {
        let daemon = expect_ready(&rx)[0];
        expect_ready(&rx);
        p.wait();
        daemon
    })
    .unwrap();
    assert!(r.timed_out(), "{r:?}");
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::TERM), "{r:?}");
    // It ignored TERM: cgroup.kill ended it, a grace period later.
    assert_all_dead(&[daemon]);
    assert!(!r.containment.cgroup.unwrap().path.exists());
    leak.assert_clean();
}

#[test]
fn cpu_time_of_the_whole_tree_is_reported() {
    let _serial = serial();
    warm_up();
    if !cgroup_available("cpu_time_of_the_whole_tree_is_reported") {
        return;
    }
    // The work is done by a grandchild, which the child's own rusage
    // would not count.
    let r = Command::new("sh")
        .args([
            "-c",
            "sh -c 'i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done' & wait",
        ])
        .cgroup(Cgroup::new())
        .run()
        .unwrap();
    assert!(r.success(), "{r:?}");
    let usage = r.containment.cgroup.unwrap();
    assert!(usage.cpu_usage.unwrap() > Duration::ZERO, "{usage:?}");
    let parent = usage.path.parent().unwrap();
    let memory_enabled = std::fs::read_to_string(parent.join("cgroup.subtree_control"))
        .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"));
    assert_eq!(usage.memory_peak.is_some(), memory_enabled, "{usage:?}");
}

#[test]
fn a_parent_that_is_not_a_writable_cgroup_is_a_typed_error_and_nothing_runs() {
    let _serial = serial();
    warm_up();
    let leak = LeakCheck::new();
    for parent in ["/proc/no-such-cgroup", "/sys/fs/cgroup/memory"] {
        let mut cmd = fixture_cmd(["exit", "0"]);
        cmd.cgroup(Cgroup::new().parent(parent));
        match cmd.run() {
            Err(Error::CgroupUnavailable { program, .. }) => {
                assert!(program.ends_with("childminder-fixture"));
            }
            other => panic!("{parent}: expected CgroupUnavailable, got {other:?}"),
        }
    }
    leak.assert_clean();
}

#[test]
fn a_cgroup_v1_hierarchy_is_refused_and_left_as_it_was() {
    let _serial = serial();
    let v1 = Path::new("/sys/fs/cgroup/memory");
    if !v1.join("memory.limit_in_bytes").exists() {
        eprintln!("SKIPPED a_cgroup_v1_hierarchy_is_refused: no cgroup v1 memory hierarchy here");
        return;
    }
    let before: Vec<PathBuf> = subdirs(v1);
    let err = Command::new("true")
        .cgroup(Cgroup::new().parent(v1))
        .run()
        .unwrap_err();
    // Refused before anything is made there (where the v1 and v2
    // hierarchies are one mount, after a directory was made and found
    // without cgroup.kill).
    let message = err.to_string();
    assert!(
        message.contains("not in the cgroup v2 hierarchy") || message.contains("cgroup.kill"),
        "{err}"
    );
    assert_eq!(subdirs(v1), before, "a directory made there was left");
}

/// Caught by an acceptance run: a parent outside any cgroup filesystem
/// (`--cgroup-parent /nonexistent`) had its missing directories made, and
/// removed, on the filesystem it named, and the error blamed a missing
/// `cgroup.kill`. It is refused before anything is made, and says why.
#[test]
fn a_parent_outside_the_cgroup_hierarchy_is_refused_before_anything_is_made() {
    let _serial = serial();
    let top = std::env::temp_dir().join(format!("no-cgroup-{}", std::process::id()));
    let err = Command::new("true")
        .cgroup(Cgroup::new().parent(top.join("jobs")))
        .run()
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("not in the cgroup v2 hierarchy")
            || message.contains("no cgroup v2 hierarchy is mounted"),
        "{err}"
    );
    assert!(message.contains(&top.display().to_string()) || message.contains("mounted"));
    assert!(!top.exists(), "{} was made", top.display());
}

/// Where cgroup2 is mounted, from /proc/self/mountinfo (the fs type
/// follows the `-` separator; the mount point is the fifth field).
fn cgroup2_mount() -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let dash = fields.iter().position(|f| *f == "-")?;
        (fields.get(dash + 1) == Some(&"cgroup2")).then(|| PathBuf::from(fields[4]))
    })
}

/// Caught by an acceptance run: a parent that starts with the mount point
/// but climbs out of it with `..` passed the check, and its directories
/// were made (and removed) on whatever filesystem it reached.
#[test]
fn a_parent_climbing_out_of_the_mount_with_dot_dot_is_refused_before_anything_is_made() {
    let _serial = serial();
    let Some(mount) = cgroup2_mount() else {
        eprintln!("SKIPPED a_parent_climbing_out: no cgroup2 mount");
        return;
    };
    let top = std::env::temp_dir().join(format!("climbed-{}", std::process::id()));
    let mut parent = mount.clone();
    for _ in mount.components().skip(1) {
        parent.push("..");
    }
    parent.push(top.strip_prefix("/").unwrap());
    let err = Command::new("true")
        .cgroup(Cgroup::new().parent(parent.join("jobs")))
        .run()
        .unwrap_err();
    assert!(matches!(err, Error::CgroupUnavailable { .. }), "{err:?}");
    assert!(
        err.to_string().contains("not in the cgroup v2 hierarchy"),
        "{err}"
    );
    assert!(!top.exists(), "{} was made", top.display());
}

/// Caught by an acceptance run: a child that made cgroups of its own
/// inside its cgroup (as `systemd-run --scope` or a container runtime
/// does) left its cgroup behind, and the parents made for it, silently:
/// a cgroup with children cannot be removed. Its subtree goes first now.
#[test]
fn cgroups_the_child_made_inside_its_own_are_removed_with_it() {
    let _serial = serial();
    warm_up();
    if !cgroup_available("cgroups_the_child_made_inside_its_own") {
        return;
    }
    let leak = LeakCheck::new();
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        r#"mount=$(awk '{for (i = 1; i <= NF; i++) if ($i == "-") { if ($(i+1) == "cgroup2") print $5; break }}' /proc/self/mountinfo)
own="$mount$(sed -n 's/^0:://p' /proc/self/cgroup)"
mkdir "$own/inner" "$own/inner/deeper" "$own/other" "$own/other/threads" || exit 1
# A threaded cgroup's cgroup.procs cannot be read (EOPNOTSUPP): listing
# it must not cost the others their first signal.
echo threaded > "$own/other/threads/cgroup.type" || exit 3
sleep 300 >/dev/null 2>&1 &
echo $! > "$own/inner/deeper/cgroup.procs" || exit 2
echo $!"#,
    ])
    .grace_period(Duration::from_secs(30))
    .cgroup(Cgroup::new());
    let started = Instant::now();
    let out = cmd.output().unwrap();
    // The first signal reached the sleeper in its cgroup: no grace period
    // waited for `cgroup.kill`.
    assert!(started.elapsed() < Duration::from_secs(20), "{out:?}");
    let r = &out.result;
    assert_eq!(r.exit, Some(ExitStatus::Exited(0)), "{r:?}");
    let sleeper: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let leaf = r.containment.cgroup.clone().unwrap().path;
    assert!(!leaf.exists(), "{} was left behind", leaf.display());
    assert_all_dead(&[sleeper]);
    leak.assert_clean();
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn with_the_fallback_the_group_and_the_subreaper_contain_the_child_and_say_so() {
    let _serial = serial();
    warm_up();
    let leak = LeakCheck::new();
    let mut cmd = fixture_cmd(["daemon", "300"]);
    cmd.grace_period(GRACE)
        .cgroup(Cgroup::new().parent("/proc/no-such-cgroup").fallback(true));
    let (lines, rx) = line_consumer();
    let (daemon, r) = with_process_result(&cmd, stdin::empty(), lines, discard, |p| {
        let daemon = expect_ready(&rx)[0];
        p.wait();
        daemon
    })
    .unwrap();
    assert_eq!(r.exit, Some(ExitStatus::Exited(0)), "{r:?}");
    assert!(r.containment.cgroup.is_none());
    let why = r.containment.cgroup_fallback.as_deref().unwrap();
    assert!(why.contains("/proc/no-such-cgroup"), "{why}");
    assert!(r.containment.subreaper);
    assert_eq!(r.containment.escapees_ended, 1, "{r:?}");
    assert!(!pid_alive(daemon));
    leak.assert_clean();
}

/// The name was our pid and a counter only: a PID-1 `init --cgroup` in
/// another pid namespace (pid 1 as well), or the cgroup a SIGKILLed
/// supervisor left behind, made the `mkdir` fail with EEXIST and the spawn
/// with it.
#[test]
fn a_cgroup_name_already_taken_is_skipped() {
    let _serial = serial();
    warm_up();
    if !cgroup_available("a_cgroup_name_already_taken_is_skipped") {
        return;
    }
    let Some(mount) = cgroup2_mount() else {
        eprintln!("SKIPPED a_cgroup_name_already_taken_is_skipped: no cgroup2 mount");
        return;
    };
    let own = cgroup_of(std::process::id() as i32);
    let parent = mount
        .join(own.trim_start_matches('/'))
        .join(format!("cm-taken-{}", std::process::id()));
    std::fs::create_dir(&parent).unwrap();
    // The counter starts at 0 in each process (each test's, under nextest).
    let taken: Vec<PathBuf> = (0..50)
        .map(|n| parent.join(format!("childminder-{}-{n}", std::process::id())))
        .collect();
    for dir in &taken {
        std::fs::create_dir(dir).unwrap();
    }
    let r = Command::new("true")
        .cgroup(Cgroup::new().parent(&parent))
        .run();
    for dir in taken.iter().chain([&parent]) {
        std::fs::remove_dir(dir).unwrap();
    }
    let r = r.unwrap();
    assert!(r.success(), "{r:?}");
    let leaf = r.containment.cgroup.unwrap().path;
    assert!(!taken.contains(&leaf), "{}", leaf.display());
}

#[test]
fn missing_parent_directories_are_created_and_removed_again() {
    let _serial = serial();
    warm_up();
    if !cgroup_available("missing_parent_directories_are_created") {
        return;
    }
    let own = cgroup_of(std::process::id() as i32);
    let mount = Path::new("/sys/fs/cgroup/unified");
    let base = mount.join(own.trim_start_matches('/'));
    if !base.is_dir() {
        eprintln!(
            "SKIPPED missing_parent_directories: cgroup2 is not at {}",
            mount.display()
        );
        return;
    }
    let top = base.join(format!("cm-test-{}", std::process::id()));
    let r = Command::new("true")
        .cgroup(Cgroup::new().parent(top.join("jobs")))
        .run()
        .unwrap();
    assert!(
        r.containment
            .cgroup
            .unwrap()
            .path
            .starts_with(top.join("jobs"))
    );
    assert!(!top.exists(), "the parents created were not removed");
}

#[test]
fn pass_fd_cannot_be_combined_with_a_cgroup() {
    let _serial = serial();
    let file = std::fs::File::open("/dev/null").unwrap();
    let err = Command::new("true")
        .cgroup(Cgroup::new())
        .pass_fd(file, 3)
        .validate()
        .unwrap_err();
    assert!(err.to_string().contains("cgroup"), "{err}");
}

#[test]
fn a_runtime_that_shuts_down_kills_the_cgroup_and_removes_it() {
    let _serial = serial();
    warm_up();
    if !cgroup_available("a_runtime_that_shuts_down_kills_the_cgroup") {
        return;
    }
    let runtime = || support::current_thread_runtime();
    // tokio's process-wide signal state first, so the leak check sees ours.
    drop(runtime());
    let leak = LeakCheck::new();
    let rt = runtime();
    let (child, daemon) = rt.block_on(async {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = fixture_cmd(["daemon", "300", "ignore-term"]);
        cmd.cgroup(Cgroup::new());
        let mut child = cmd.spawn().unwrap();
        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).await.unwrap();
        let daemon = support::ready_pids(line.trim_end())[0];
        (child, daemon)
    });
    // The runtime goes first, with the Child (and its cgroup) still held.
    drop(rt);
    assert_all_dead(&[daemon]);
    let r = child.try_result().unwrap();
    let path = r.containment.cgroup.unwrap().path;
    assert!(!path.exists(), "{} left behind", path.display());
    drop(child);
    leak.assert_clean();
}
