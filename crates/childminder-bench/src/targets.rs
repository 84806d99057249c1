//! The targets, checked against the rows of this run.

use crate::table::{PEERS, Row, Target, fmt_num};

fn find<'a>(rows: &'a [Row], scenario: &str, contender: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.contender == contender && r.scenario == scenario)
}

/// The scenario name of the first row whose name starts with `prefix`
/// (sizes are part of the names: "stdout 1024 MiB").
fn scenario_named(rows: &[Row], prefix: &str) -> Option<String> {
    rows.iter()
        .find(|r| r.scenario.starts_with(prefix))
        .map(|r| r.scenario.clone())
}

fn unmeasured(target: String) -> Target {
    Target {
        target,
        measured: "not measured in this run".to_owned(),
        met: None,
    }
}

/// childminder's median / a peer's ≤ `limit`.
fn ratio_at_most(rows: &[Row], scenario: &str, who: &str, peer: &str, limit: f64) -> Target {
    let name = format!("{scenario}: {who} ≤ {limit:.2}x {peer}");
    let (Some(mine), Some(theirs)) = (find(rows, scenario, who), find(rows, scenario, peer)) else {
        return unmeasured(name);
    };
    let (Some(m), Some(t)) = (mine.median(), theirs.median()) else {
        return unmeasured(name);
    };
    let ratio = m / t;
    Target {
        target: name,
        measured: format!(
            "{ratio:.2}x ({} vs {} {})",
            fmt_num(m),
            fmt_num(t),
            mine.unit
        ),
        met: Some(ratio <= limit),
    }
}

fn best_peer(rows: &[Row], scenario: &str, higher: bool) -> Option<(&'static str, f64)> {
    PEERS
        .iter()
        .filter_map(|p| {
            find(rows, scenario, p)
                .and_then(Row::median)
                .map(|m| (*p, m))
        })
        .reduce(|a, b| if (b.1 > a.1) == higher { b } else { a })
}

/// childminder's median ≥ `limit` × the best peer's (throughput).
fn at_least_best_peer(rows: &[Row], prefix: &str, who: &str) -> Target {
    let name = format!("{prefix}: {who} ≥ 1.00x best peer");
    let Some(scenario) = scenario_named(rows, prefix) else {
        return unmeasured(name);
    };
    let (Some(m), Some((peer, p))) = (
        find(rows, &scenario, who).and_then(Row::median),
        best_peer(rows, &scenario, true),
    ) else {
        return unmeasured(name);
    };
    Target {
        target: name,
        measured: format!(
            "{:.2}x ({} vs {peer} {} MB/s)",
            m / p,
            fmt_num(m),
            fmt_num(p)
        ),
        met: Some(m >= p),
    }
}

/// childminder's median ≤ the peers' floor + 1 ms (latencies, in ms).
fn within_ms_of_floor(rows: &[Row], scenario: &str, who: &str) -> Target {
    let name = format!("{scenario}: {who} ≤ peers' floor + 1 ms");
    let (Some(m), Some((peer, floor))) = (
        find(rows, scenario, who).and_then(Row::median),
        best_peer(rows, scenario, false),
    ) else {
        return unmeasured(name);
    };
    Target {
        target: name,
        measured: format!(
            "{:+.3} ms ({} ms vs {peer} {} ms)",
            m - floor,
            fmt_num(m),
            fmt_num(floor)
        ),
        met: Some(m - floor <= 1.0),
    }
}

fn escalation(rows: &[Row], mode: &str, who: &str) -> Target {
    let name = format!("escalation {mode}, {who}: every signal within 5 ms of due");
    let mut parts = Vec::new();
    let mut worst: Option<f64> = None;
    // KILL is due a grace period after TERM was *sent* (the child is owed a
    // whole grace after TERM), so its error is measured against that.
    for (signal, metric) in [("TERM", "TERM error"), ("KILL", "KILL after TERM error")] {
        let scenario = format!("escalation {mode}: {metric}");
        let Some(s) = find(rows, &scenario, who).and_then(|r| r.summary) else {
            continue;
        };
        let w = s.max.abs().max(s.min.abs());
        worst = Some(worst.map_or(w, |x: f64| x.max(w)));
        parts.push(format!(
            "{signal} median {} / worst {} ms",
            fmt_num(s.median),
            fmt_num(if s.max.abs() >= s.min.abs() {
                s.max
            } else {
                s.min
            })
        ));
    }
    match worst {
        None => unmeasured(name),
        Some(w) => Target {
            target: name,
            measured: parts.join(", "),
            met: Some(w <= 5.0),
        },
    }
}

/// The scale rows of the largest N measured under `who`, as (N, rows).
fn scale_value(rows: &[Row], n: usize, metric: &str, who: &str) -> Option<f64> {
    find(rows, &format!("scale {n}: {metric}"), who).and_then(Row::median)
}

fn scale_sizes(rows: &[Row]) -> Vec<usize> {
    let mut sizes: Vec<usize> = rows
        .iter()
        .filter_map(|r| {
            r.scenario
                .strip_prefix("scale ")?
                .split(':')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

fn scale(rows: &[Row]) -> Vec<Target> {
    let mut out = scale_of(rows, "childminder-async");
    if rows
        .iter()
        .any(|r| r.contender == "childminder-tree" && r.scenario.starts_with("scale "))
    {
        out.extend(scale_of(rows, "childminder-tree"));
    }
    out
}

/// The scale targets of one contender.
fn scale_of(rows: &[Row], who: &'static str) -> Vec<Target> {
    let sizes = scale_sizes(rows);
    let Some(&n) = sizes.iter().find(|&&n| n <= 1000).or(sizes.first()) else {
        return vec![
            unmeasured(format!("scale: O(1) threads ({who})")),
            unmeasured(format!("scale 1000, {who}: idle CPU < 1% of a core")),
            unmeasured(format!(
                "scale 1000, {who}: RSS per child < 16 KiB beyond base"
            )),
        ];
    };
    let mut out = Vec::new();
    // O(1): the threads added by N children do not grow with N (and stay
    // a handful).
    let added: Vec<(usize, f64)> = sizes
        .iter()
        .filter_map(|&k| scale_value(rows, k, "threads added", who).map(|t| (k, t)))
        .collect();
    let flat = added.windows(2).all(|w| w[1].1 <= w[0].1) && added.iter().all(|(_, t)| *t <= 2.0);
    out.push(Target {
        target: format!("scale: O(1) threads ({who})"),
        measured: added
            .iter()
            .map(|(k, t)| format!("{t:.0} thread(s) added by {k} children"))
            .collect::<Vec<_>>()
            .join(", "),
        met: (!added.is_empty()).then_some(flat),
    });
    let cpu = scale_value(rows, n, "idle CPU", who);
    out.push(Target {
        target: format!("scale {n}, {who}: idle CPU < 1% of a core"),
        measured: cpu.map_or("-".into(), |c| format!("{c:.3}% of a core")),
        met: cpu.map(|c| c < 1.0),
    });
    let rss = scale_value(rows, n, "RSS per child", who);
    out.push(Target {
        target: format!("scale {n}, {who}: RSS per child < 16 KiB beyond base"),
        measured: rss.map_or("-".into(), |r| format!("{r:.1} KiB")),
        met: rss.map(|r| r < 16.0),
    });
    out
}

pub fn evaluate(rows: &[Row]) -> Vec<Target> {
    let mut t = vec![
        // Issue 11: the one-line calls as fast as std's and tokio's; the
        // scoped form with user code (consumers, an action) within 15 %.
        ratio_at_most(rows, "spawn-wait", "childminder output()", "std", 1.05),
        ratio_at_most(
            rows,
            "spawn-wait null stdio",
            "childminder status()",
            "std",
            1.05,
        ),
        ratio_at_most(
            rows,
            "spawn-wait",
            "childminder-async output_async()",
            "tokio",
            1.00,
        ),
        ratio_at_most(rows, "spawn-wait", "childminder", "std", 1.15),
        ratio_at_most(rows, "spawn-wait", "childminder-async", "tokio", 1.00),
        at_least_best_peer(rows, "stdout", "childminder"),
        at_least_best_peer(rows, "stdout", "childminder-async"),
        at_least_best_peer(rows, "echo", "childminder"),
        at_least_best_peer(rows, "echo", "childminder-async"),
        within_ms_of_floor(rows, "exit detection", "childminder"),
        within_ms_of_floor(rows, "exit detection", "childminder-async"),
        within_ms_of_floor(rows, "teardown", "childminder"),
        within_ms_of_floor(rows, "teardown", "childminder-async"),
    ];
    for mode in ["deadline", "shutdown"] {
        for who in ["childminder", "childminder-async"] {
            t.push(escalation(rows, mode, who));
        }
    }
    t.push(ratio_at_most(
        rows,
        "restart cycle",
        "childminder-tree",
        "std",
        1.2,
    ));
    t.push(ratio_at_most(
        rows,
        "restart cycle",
        "childminder-tree",
        "tokio",
        1.2,
    ));
    t.extend(scale(rows));
    // The shipped binary is the static one (`cargo build-static`); the
    // dynamic rows show what the dynamic loader costs.
    for who in [
        "childminder run (static)",
        "childminder run",
        "childminder run --no-subreaper",
    ] {
        t.push(ratio_at_most(rows, "cli start-up", who, "timeout", 1.15));
    }
    // `childminder run` moves a stream at least as fast as `cat` does.
    t.push(throughput_at_least(
        rows,
        "cli pass-through",
        "childminder run",
        "cat",
    ));
    // `childminder up`'s prefixed output is at least as fast as `sed 's/^/name | /'`.
    t.push(throughput_at_least(
        rows,
        "up output",
        "childminder up",
        "sed",
    ));
    t
}

/// `who`'s median ≥ 1.00x `peer`'s, in the first scenario named `prefix...`.
fn throughput_at_least(rows: &[Row], prefix: &str, who: &str, peer: &str) -> Target {
    let name = format!("{prefix}: {who} ≥ 1.00x {peer}");
    let Some(scenario) = scenario_named(rows, prefix) else {
        return unmeasured(name);
    };
    let (Some(m), Some(p)) = (
        find(rows, &scenario, who).and_then(Row::median),
        find(rows, &scenario, peer).and_then(Row::median),
    ) else {
        return unmeasured(name);
    };
    Target {
        target: name,
        measured: format!(
            "{:.2}x ({} vs {peer} {} MB/s)",
            m / p,
            fmt_num(m),
            fmt_num(p)
        ),
        met: Some(m >= p),
    }
}
