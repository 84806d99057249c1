//! containment: what each way of containing the child costs over the plain
//! process group, side by side in one run.
//!
//! - `containment spawn-wait`: `/usr/bin/true` with null stdio to its end
//!   (std for scale): the subreaper adds the /proc listings of its sweep,
//!   the cgroup adds mkdir, the fork path and rmdir.
//! - `containment 50 left in the group`: the child starts 50 sleeping
//!   grandchildren in its group and exits; `run()` returns once they are
//!   ended. The group is watched by liveness checks, the cgroup by its
//!   `populated` event.
//! - `containment 50 setsid daemons`: the same grandchildren, each in a
//!   session of its own: the group cannot reach them (they are left
//!   running), the subreaper and the cgroup end them.
//!
//! The subreaper is process-wide: once a contender turns it on, orphans of
//! the other contenders' children re-parent to this process too, so each
//! run reaps them after its timing (`reap_orphans`).

use std::time::{Duration, Instant};

use childminder::{Cgroup, Command, Error, Stdio};

use super::{Config, SH, TRUE};
use crate::runner::{Contender, interleave, micros, millis};
use crate::table::{Better, Row};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Group,
    Subreaper,
    Cgroup,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Group, Mode::Subreaper, Mode::Cgroup];

    fn contender(self) -> &'static str {
        match self {
            Mode::Group => "childminder",
            Mode::Subreaper => "childminder subreaper",
            Mode::Cgroup => "childminder cgroup",
        }
    }

    fn apply(self, cmd: &mut Command) -> &mut Command {
        match self {
            Mode::Group => cmd,
            Mode::Subreaper => cmd.subreaper(true),
            Mode::Cgroup => cmd.cgroup(Cgroup::new()),
        }
    }
}

fn quiet(program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::Null)
        .stdout(Stdio::Null)
        .stderr(Stdio::Null)
        .grace_period(Duration::from_secs(2));
    cmd
}

/// Runs `cmd` in `mode` to its end (sweeps included) and returns the time
/// taken; then reaps what the process-wide subreaper left to us.
fn timed_run(cmd: &Command, mode: Mode, unit: fn(Duration) -> f64) -> f64 {
    let mut cmd = cmd.clone();
    mode.apply(&mut cmd);
    let t = Instant::now();
    let result = cmd.run().expect("running the benchmark's child");
    let elapsed = t.elapsed();
    assert!(result.exit.is_some(), "{result:?}");
    let _ = childminder::subreaper::reap_orphans();
    unit(elapsed)
}

fn cgroup_unavailable() -> Option<String> {
    match quiet(TRUE, &[]).cgroup(Cgroup::new()).run() {
        Ok(_) => None,
        Err(e @ Error::CgroupUnavailable { .. }) => Some(e.to_string()),
        Err(e) => panic!("probing the cgroup: {e}"),
    }
}

/// Ratio of each mode's median over the plain group's, as a note.
fn note_over_group(rows: &mut [Row]) {
    let group = rows
        .iter()
        .find(|r| r.contender == Mode::Group.contender())
        .and_then(Row::median);
    for row in rows.iter_mut() {
        if row.contender == Mode::Group.contender() || !row.contender.starts_with("childminder") {
            continue;
        }
        if let (Some(group), Some(mine)) = (group, row.median()) {
            row.note = Some(format!("{:.2}x the plain group", mine / group));
        }
    }
}

pub fn run(cfg: &Config) -> Vec<Row> {
    let no_cgroup = cgroup_unavailable();
    let modes: Vec<Mode> = Mode::ALL
        .into_iter()
        .filter(|m| *m != Mode::Cgroup || no_cgroup.is_none())
        .collect();
    let mut rows = Vec::new();

    // spawn-wait, with std for scale.
    let scenario = "containment spawn-wait";
    let mut contenders = contenders_for(&modes, &quiet(TRUE, &[]), micros);
    contenders.push(Contender::new("std", || {
        let t = Instant::now();
        let status = std::process::Command::new(TRUE)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("spawning true");
        let elapsed = t.elapsed();
        assert!(status.success());
        micros(elapsed)
    }));
    rows.extend(measure(
        scenario,
        "µs",
        &mut contenders,
        cfg.pick(1000, 100),
        cfg.pick(30, 5),
    ));

    // 50 grandchildren left in the group, then 50 daemons.
    let children = 50;
    let in_group =
        format!("i=0; while [ $i -lt {children} ]; do sleep 300 & i=$((i+1)); done; exit 0");
    let daemons =
        format!("i=0; while [ $i -lt {children} ]; do setsid sleep 300 & i=$((i+1)); done; exit 0");
    for (scenario, script, group_reaches) in [
        ("containment 50 left in the group", &in_group, true),
        ("containment 50 setsid daemons", &daemons, false),
    ] {
        let reaching: Vec<Mode> = modes
            .iter()
            .copied()
            .filter(|&m| group_reaches || m != Mode::Group)
            .collect();
        let mut contenders = contenders_for(&reaching, &quiet(SH, &["-c", script]), millis);
        rows.extend(measure(
            scenario,
            "ms",
            &mut contenders,
            cfg.pick(30, 5),
            cfg.pick(3, 1),
        ));
        if !group_reaches {
            rows.push(Row::not_applicable(
                scenario,
                Mode::Group.contender(),
                "ms",
                Better::Lower,
                "cannot: the daemons leave the group and are left running",
            ));
        }
    }
    if let Some(why) = no_cgroup {
        for scenario in [
            "containment spawn-wait",
            "containment 50 left in the group",
            "containment 50 setsid daemons",
        ] {
            rows.push(Row::not_applicable(
                scenario,
                Mode::Cgroup.contender(),
                "ms",
                Better::Lower,
                &why,
            ));
        }
    }
    rows
}

fn contenders_for(
    modes: &[Mode],
    cmd: &Command,
    unit: fn(Duration) -> f64,
) -> Vec<Contender<'static, f64>> {
    modes
        .iter()
        .map(|&mode| {
            let cmd = cmd.clone();
            Contender::new(mode.contender(), move || timed_run(&cmd, mode, unit))
        })
        .collect()
}

fn measure(
    scenario: &str,
    unit: &str,
    contenders: &mut Vec<Contender<'_, f64>>,
    runs: usize,
    warmup: usize,
) -> Vec<Row> {
    let samples = interleave(contenders, warmup, runs);
    let mut rows: Vec<Row> = contenders
        .iter()
        .zip(samples)
        .map(|(c, s)| Row::new(scenario, c.name.clone(), unit, Better::Lower, &s))
        .collect();
    note_over_group(&mut rows);
    rows
}
