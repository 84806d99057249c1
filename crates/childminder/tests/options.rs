//! Issue 2, row 1: the `Command` options reach the child as documented.

mod common;
#[path = "common/support.rs"]
mod support;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::time::Duration;

use childminder::{
    Command, DEFAULT_BUFFER_SIZE, DEFAULT_GRACE_PERIOD, MAX_BUFFER_SIZE, MAX_DURATION, Signal,
    Stdio, Termination,
};
use common::{LeakCheck, MARKER_VAR, fixture, marker_value};
use support::{Scratch, fixture_cmd, warm_up};

/// The fixture's stdout, the same on both spawn paths: `posix_spawn`
/// (given the whole environment) and std's fork, which
/// `kill_on_parent_death` takes (given the command's changes to it).
fn stdout_of(cmd: &Command) -> Vec<u8> {
    let spawned = stdout_on_one_path(cmd);
    let forked = stdout_on_one_path(cmd.clone().kill_on_parent_death(true));
    assert_eq!(
        String::from_utf8_lossy(&spawned),
        String::from_utf8_lossy(&forked),
        "posix_spawn and the fork path gave the child different options"
    );
    spawned
}

fn stdout_on_one_path(cmd: &Command) -> Vec<u8> {
    let out = cmd.output().expect("run the fixture");
    assert!(
        out.result.success(),
        "fixture failed: {:?}, stderr {:?}",
        out.result,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The value the fixture's `env NAME` prints for `name`, without the newline.
fn child_env(cmd: &mut Command, name: &str) -> Vec<u8> {
    cmd.args(["env", name]);
    let mut out = stdout_of(cmd);
    assert_eq!(out.pop(), Some(b'\n'));
    out
}

#[test]
fn documented_defaults_and_bounds_are_accepted() {
    assert_eq!(DEFAULT_GRACE_PERIOD, Duration::from_secs(5));
    assert_eq!(DEFAULT_BUFFER_SIZE, 64 * 1024);
    assert_eq!(MAX_BUFFER_SIZE, 16 * 1024 * 1024);
    assert_eq!(MAX_DURATION, Duration::from_secs(100 * 365 * 24 * 3600));

    Command::new("true").validate().unwrap();
    Command::new("true")
        .buffer_size(1)
        .grace_period(Duration::ZERO)
        .deadline(Duration::ZERO)
        .validate()
        .unwrap();
    Command::new("true")
        .buffer_size(MAX_BUFFER_SIZE)
        .grace_period(MAX_DURATION)
        .deadline(MAX_DURATION)
        .validate()
        .unwrap();
}

#[test]
fn builder_methods_chain_and_getters_report_what_was_given() {
    warm_up();
    let leak = LeakCheck::new();
    let mut cmd = Command::new(fixture());
    cmd.arg("print-then-exit")
        .args(["hello", "0"])
        .env(MARKER_VAR, marker_value())
        .envs([("CM_A", "1"), ("CM_B", "2")])
        .env_remove("CM_NOT_THERE")
        .current_dir("/")
        .grace_period(Duration::from_millis(300))
        .buffer_size(4096)
        .flush_stdin(false)
        .deadline(Duration::from_secs(30))
        .process_group(true)
        .kill_on_parent_death(false)
        .term_signal(Signal::INT)
        .stdin(Stdio::Piped)
        .stdout(Stdio::Piped)
        .stderr(Stdio::Piped)
        .pipe_capacity(128 * 1024);
    assert_eq!(cmd.get_program(), OsStr::new(fixture()));
    assert_eq!(
        cmd.get_args().collect::<Vec<_>>(),
        ["print-then-exit", "hello", "0"]
    );
    cmd.validate().unwrap();
    let out = cmd.output().unwrap();
    assert_eq!(out.stdout, b"hello\n");
    assert_eq!(out.stderr, b"err:hello\n");
    assert!(out.result.success(), "{:?}", out.result);
    assert!(!out.result.timed_out());
    leak.assert_clean();
}

#[test]
fn env_sets_and_overrides_variables() {
    warm_up();
    let leak = LeakCheck::new();
    assert_eq!(
        child_env(
            fixture_cmd::<_, &str>([]).env("CM_GREETING", "a b $(x) 'q'"),
            "CM_GREETING"
        ),
        b"a b $(x) 'q'"
    );
    // A variable of the parent (every test process has PATH) is overridden.
    assert!(std::env::var_os("PATH").is_some());
    assert_eq!(
        child_env(
            fixture_cmd::<_, &str>([]).env("PATH", "/cm/override"),
            "PATH"
        ),
        b"/cm/override"
    );
    // envs sets several; a later env of the same name wins.
    assert_eq!(
        child_env(
            fixture_cmd::<_, &str>([])
                .envs([("CM_ONE", "1"), ("CM_TWO", "2")])
                .env("CM_ONE", "again"),
            "CM_ONE"
        ),
        b"again"
    );
    // The parent's environment is inherited by default.
    let parent_path = std::env::var_os("PATH").unwrap().into_vec();
    assert_eq!(
        child_env(&mut fixture_cmd::<_, &str>([]), "PATH"),
        parent_path
    );
    leak.assert_clean();
}

#[test]
fn env_values_are_passed_byte_exact_including_non_utf8() {
    warm_up();
    let leak = LeakCheck::new();
    let value = OsStr::from_bytes(b"\xff\xfe=x\ty z\x80");
    assert_eq!(
        child_env(fixture_cmd::<_, &str>([]).env("CM_RAW", value), "CM_RAW"),
        value.as_bytes()
    );
    leak.assert_clean();
}

#[test]
fn env_remove_hides_a_parent_variable_and_env_after_it_sets_it_again() {
    warm_up();
    let leak = LeakCheck::new();
    assert!(std::env::var_os("PATH").is_some());
    assert_eq!(
        child_env(fixture_cmd::<_, &str>([]).env_remove("PATH"), "PATH"),
        b"<unset>"
    );
    assert_eq!(
        child_env(
            fixture_cmd::<_, &str>([])
                .env("CM_GONE", "1")
                .env_remove("CM_GONE"),
            "CM_GONE"
        ),
        b"<unset>"
    );
    assert_eq!(
        child_env(
            fixture_cmd::<_, &str>([])
                .env_remove("CM_BACK")
                .env("CM_BACK", "yes"),
            "CM_BACK"
        ),
        b"yes"
    );
    leak.assert_clean();
}

#[test]
fn env_clear_then_env_is_the_whole_environment() {
    warm_up();
    let leak = LeakCheck::new();
    let cleared = || {
        let mut cmd = Command::new(fixture());
        cmd.env("CM_DROPPED", "1")
            .env_clear()
            .env(MARKER_VAR, marker_value())
            .env("ONLY", "me");
        cmd
    };
    assert_eq!(stdout_of(cleared().arg("env-count")), b"2\n");
    assert_eq!(child_env(&mut cleared(), "ONLY"), b"me");
    assert_eq!(child_env(&mut cleared(), "CM_DROPPED"), b"<unset>");
    assert_eq!(child_env(&mut cleared(), "PATH"), b"<unset>");
    assert_eq!(child_env(&mut cleared(), "HOME"), b"<unset>");
    leak.assert_clean();
}

#[test]
fn current_dir_sets_the_childs_working_directory() {
    warm_up();
    let scratch = Scratch::new("cwd");
    let dir = scratch.path().join("with space $(x)");
    std::fs::create_dir(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let leak = LeakCheck::new();

    let out = stdout_of(fixture_cmd(["cwd"]).current_dir(&dir));
    let mut expected = dir.as_os_str().as_bytes().to_vec();
    expected.push(b'\n');
    assert_eq!(out, expected);

    assert_eq!(stdout_of(fixture_cmd(["cwd"]).current_dir("/")), b"/\n");

    // Without current_dir the child runs where we run.
    let here = std::env::current_dir().unwrap();
    let mut expected = here.as_os_str().as_bytes().to_vec();
    expected.push(b'\n');
    assert_eq!(stdout_of(&fixture_cmd(["cwd"])), expected);
    leak.assert_clean();
}

#[test]
fn args_reach_the_child_byte_exact() {
    warm_up();
    let leak = LeakCheck::new();
    let args: Vec<OsString> = [
        &b""[..],
        b" ",
        b"two words",
        b"'single quoted'",
        b"\"double quoted\"",
        b"$(echo not run)",
        b"`id`",
        b"${HOME}",
        b"line1\nline2\n",
        b"tab\there",
        b"back\\slash",
        b"*",
        b"-n",
        b"--",
        b"semi;colon|pipe&amp>redirect<",
        "\u{fc}mlaut \u{1f600}".as_bytes(),
        b"\x80\xff\xc3(\xfe",
    ]
    .iter()
    .map(|b| OsString::from_vec(b.to_vec()))
    .collect();
    let mut cmd = fixture_cmd(["args"]);
    cmd.args(&args);
    let out = String::from_utf8(stdout_of(&cmd)).unwrap();
    let expected: String = args
        .iter()
        .map(|a| {
            let hex: String = a.as_bytes().iter().map(|b| format!("{b:02x}")).collect();
            hex + "\n"
        })
        .collect();
    assert_eq!(out, expected);
    leak.assert_clean();
}

#[test]
fn stdio_null_connects_dev_null() {
    warm_up();
    let leak = LeakCheck::new();
    // stdin from /dev/null reads EOF at once.
    let out = fixture_cmd(["count-stdin"])
        .stdin(Stdio::Null)
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"0\n");
    // stdout and stderr to /dev/null: nothing reaches the consumers, and the
    // child's writes succeed.
    let out = fixture_cmd(["print-then-exit", "x", "0"])
        .stdout(Stdio::Null)
        .stderr(Stdio::Null)
        .output()
        .unwrap();
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    assert!(out.result.success(), "{:?}", out.result);
    leak.assert_clean();
}

#[test]
fn term_signal_is_the_first_signal_of_the_escalation() {
    warm_up();
    let leak = LeakCheck::new();
    let r = fixture_cmd(["sleep", "300"])
        .term_signal(Signal::INT)
        .deadline(Duration::from_millis(100))
        .run()
        .unwrap();
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::INT), "{r:?}");
    assert_eq!(r.termination, Termination::Escalated);
    assert!(r.term_sent_after.is_some() && r.kill_sent_after.is_none());
    leak.assert_clean();
}

/// `term_signal(None)` (GNU `timeout -s 0`): the deadline sends nothing,
/// and SIGKILL comes a grace period later. A fixture that dies on any
/// catchable signal dying by KILL proves nothing else was sent.
#[test]
fn term_signal_none_sends_nothing_first_then_kill_after_the_grace() {
    warm_up();
    let leak = LeakCheck::new();
    let grace = Duration::from_millis(300);
    let r = fixture_cmd(["sleep", "300"])
        .term_signal(None)
        .deadline(Duration::from_millis(100))
        .grace_period(grace)
        .run()
        .unwrap();
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL), "{r:?}");
    assert_eq!(r.termination, Termination::Escalated);
    assert!(r.timed_out(), "{r:?}");
    let (term, kill) = (r.term_sent_after.unwrap(), r.kill_sent_after.unwrap());
    assert!(kill >= term + grace, "{r:?}");
    leak.assert_clean();
}

/// Caught by an acceptance run: a relative program (`./tool`), or a
/// relative `PATH` entry, with `current_dir` set was judged from this
/// process's directory, not the child's: `./Cargo.toml` (a file here, not
/// in the child's directory) was reported found but not executable (126)
/// instead of not found (127), and a program the child could run through a
/// relative `PATH` entry was "not found on PATH".
#[test]
fn relative_programs_are_judged_from_the_childs_working_directory() {
    warm_up();
    let scratch = Scratch::new("relative");
    let dir = scratch.path().canonicalize().unwrap();
    let leak = LeakCheck::new();

    assert!(
        std::path::Path::new("Cargo.toml").is_file(),
        "run from the crate"
    );
    let err = Command::new("./Cargo.toml")
        .current_dir(&dir)
        .run()
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");

    std::fs::create_dir(dir.join("bin")).unwrap();
    let tool = dir.join("bin").join("cm-relative-tool");
    std::fs::write(&tool, "#!/bin/sh\necho ran from $PWD\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = Command::new("cm-relative-tool");
    cmd.current_dir(&dir).env("PATH", "bin:/usr/bin:/bin");
    let out = cmd.output().unwrap();
    assert!(out.result.success(), "{:?}", out.result);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("ran from {}\n", dir.display())
    );
    leak.assert_clean();
}
