//! The `childminder` command against the tools it replaces, whole process
//! against whole process, each started by this harness with `std::process`
//! and timed from before the spawn to after the wait:
//!
//! - *cli start-up*: `childminder run -- /usr/bin/true` (and with
//!   `--no-subreaper`, without the end-of-run sweep of `/proc`) against
//!   `timeout 10 /usr/bin/true` and the bare `/usr/bin/true`, every stream
//!   on `/dev/null` (childminder streams stdout and stderr, as it does for
//!   anything that is not a terminal);
//! - *cli pass-through*: `childminder run -- head -c N /dev/zero`, stdout
//!   on `/dev/null`, against `head -c N /dev/zero | cat > /dev/null` and
//!   `timeout 10 head ...` (no copy at all: the floor).
//!
//! The binary is `childminder` next to this harness's own executable
//! (`cargo build --release -p childminder-cli` first), or
//! `$CHILDMINDER_BIN`. The start-up scenario also times the statically
//! linked binary that `cargo build-static` makes (the one to ship: no
//! dynamic loader at start), when it was built:
//! `target/x86_64-unknown-linux-gnu/dist/childminder`, or
//! `$CHILDMINDER_STATIC_BIN`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{Config, HEAD, TRUE};
use crate::runner::{Contender, interleave, mb_per_s, micros};
use crate::table::{Better, Row};

const TIMEOUT: &str = "/usr/bin/timeout";

/// The `childminder` binary, if it was built.
pub fn binary() -> Option<PathBuf> {
    built("CHILDMINDER_BIN", |harness| {
        Some(harness.with_file_name("childminder"))
    })
}

/// `$var` if set, else `beside(this harness's executable)`; if that file
/// exists.
fn built(var: &str, beside: impl FnOnce(PathBuf) -> Option<PathBuf>) -> Option<PathBuf> {
    let path = match std::env::var_os(var) {
        Some(path) => PathBuf::from(path),
        None => beside(std::env::current_exe().ok()?)?,
    };
    path.is_file().then_some(path)
}

/// Runs `cmd` to its end with every stream on `/dev/null` and returns its
/// wall time in µs.
fn timed(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("spawning");
    let elapsed = t.elapsed();
    assert!(status.success(), "{cmd:?}: {status}");
    micros(elapsed)
}

/// The statically linked binary (`cargo build-static`), if it was built.
pub fn static_binary() -> Option<PathBuf> {
    built("CHILDMINDER_STATIC_BIN", |harness| {
        // The harness runs from target/<profile>/; the static build is
        // target/x86_64-unknown-linux-gnu/dist/.
        let target_dir = harness.parent()?.parent()?;
        Some(target_dir.join("x86_64-unknown-linux-gnu/dist/childminder"))
    })
}

fn start_up<'a>(bin: &'a PathBuf, static_bin: Option<&'a PathBuf>) -> Vec<Contender<'a, f64>> {
    let mut contenders = vec![
        Contender::new("childminder run", move || {
            timed(Command::new(bin).args(["run", "--", TRUE]))
        }),
        // The end-of-run sweep for escapees (on by default) lists /proc:
        // this row shows what it costs.
        Contender::new("childminder run --no-subreaper", move || {
            timed(Command::new(bin).args(["run", "--no-subreaper", "--", TRUE]))
        }),
        Contender::new("timeout", || {
            timed(Command::new(TIMEOUT).args(["10", TRUE]))
        }),
        Contender::new("true", || timed(&mut Command::new(TRUE))),
    ];
    if let Some(static_bin) = static_bin {
        contenders.insert(
            1,
            Contender::new("childminder run (static)", move || {
                timed(Command::new(static_bin).args(["run", "--", TRUE]))
            }),
        );
    }
    contenders
}

fn pass_through(bin: &PathBuf, bytes: u64) -> Vec<Contender<'_, f64>> {
    let n = bytes.to_string();
    let (n1, n2, n3) = (n.clone(), n.clone(), n);
    vec![
        Contender::new("childminder run", move || {
            let us = timed(Command::new(bin).args(["run", "--", HEAD, "-c", &n1, "/dev/zero"]));
            mb_per_s(bytes, std::time::Duration::from_secs_f64(us / 1e6))
        }),
        Contender::new("cat", move || {
            let t = Instant::now();
            let mut head = Command::new(HEAD)
                .args(["-c", &n2, "/dev/zero"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawning head");
            let cat = Command::new(super::CAT)
                .stdin(head.stdout.take().unwrap())
                .stdout(Stdio::null())
                .status()
                .expect("spawning cat");
            let head = head.wait().expect("waiting for head");
            let elapsed = t.elapsed();
            assert!(cat.success() && head.success());
            mb_per_s(bytes, elapsed)
        }),
        Contender::new("timeout", move || {
            let us = timed(Command::new(TIMEOUT).args(["10", HEAD, "-c", &n3, "/dev/zero"]));
            mb_per_s(bytes, std::time::Duration::from_secs_f64(us / 1e6))
        }),
    ]
}

pub fn run(cfg: &Config) -> Vec<Row> {
    let Some(bin) = binary() else {
        let why = "no childminder binary next to the harness: cargo build --release -p childminder-cli, or set CHILDMINDER_BIN";
        return vec![
            Row::not_applicable("cli start-up", "childminder run", "µs", Better::Lower, why),
            Row::not_applicable(
                "cli pass-through",
                "childminder run",
                "MB/s",
                Better::Higher,
                why,
            ),
        ];
    };
    let mut rows = Vec::new();
    let static_bin = static_binary();
    let mut contenders = start_up(&bin, static_bin.as_ref());
    let samples = interleave(&mut contenders, cfg.pick(50, 10), cfg.pick(1000, 200));
    rows.extend(
        contenders
            .iter()
            .zip(samples)
            .map(|(c, s)| Row::new("cli start-up", c.name.clone(), "µs", Better::Lower, &s)),
    );
    let bytes: u64 = cfg.pick(1 << 30, 128 << 20);
    let scenario = format!("cli pass-through {} MiB", bytes >> 20);
    let mut contenders = pass_through(&bin, bytes);
    let samples = interleave(&mut contenders, 1, cfg.pick(10, 3));
    rows.extend(
        contenders
            .iter()
            .zip(samples)
            .map(|(c, s)| Row::new(scenario.clone(), c.name.clone(), "MB/s", Better::Higher, &s)),
    );
    rows
}
