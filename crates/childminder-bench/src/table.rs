//! The report: one row per scenario and contender, the ratios of
//! childminder's median to each peer's, the targets, and their printing.

use serde::Serialize;

use crate::stats::Summary;

/// The peers childminder is compared with, by contender name.
pub const PEERS: [&str; 2] = ["std", "tokio"];

/// Which way is better for a row's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Lower,
    Higher,
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The scenario, with the metric when it has several
    /// (`"escalation deadline: TERM error"`).
    pub scenario: String,
    pub contender: String,
    pub unit: String,
    pub better: Better,
    /// `None`: the contender cannot do this (see `note`).
    pub summary: Option<Summary>,
    /// childminder's median over std's (childminder rows only).
    pub vs_std: Option<f64>,
    /// childminder's median over tokio's (childminder rows only).
    pub vs_tokio: Option<f64>,
    pub note: Option<String>,
}

impl Row {
    pub fn new(
        scenario: impl Into<String>,
        contender: impl Into<String>,
        unit: &str,
        better: Better,
        samples: &[f64],
    ) -> Row {
        Row {
            scenario: scenario.into(),
            contender: contender.into(),
            unit: unit.to_owned(),
            better,
            summary: Some(Summary::of(samples)),
            vs_std: None,
            vs_tokio: None,
            note: None,
        }
    }

    /// A contender that has nothing to measure here.
    pub fn not_applicable(
        scenario: impl Into<String>,
        contender: &str,
        unit: &str,
        better: Better,
        why: &str,
    ) -> Row {
        Row {
            scenario: scenario.into(),
            contender: contender.to_owned(),
            unit: unit.to_owned(),
            better,
            summary: None,
            vs_std: None,
            vs_tokio: None,
            note: Some(why.to_owned()),
        }
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Row {
        self.note = Some(note.into());
        self
    }

    pub fn median(&self) -> Option<f64> {
        self.summary.map(|s| s.median)
    }
}

/// One of the targets and how far the measurement is from it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub target: String,
    pub measured: String,
    /// `None` when the run did not measure it (`--only`, `--quick`).
    pub met: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Meta {
    pub date: String,
    pub mode: String,
    pub nproc: usize,
    pub kernel: String,
    pub cpu: String,
    pub loadavg_start: String,
    pub loadavg_end: String,
    pub wall_seconds: f64,
    pub default_buffer_size: usize,
    /// Extra open fds held during the run (`--hold-fds`), normally 0.
    pub held_fds: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub meta: Meta,
    pub rows: Vec<Row>,
    pub targets: Vec<Target>,
}

/// Fills `vs_std` and `vs_tokio` of every childminder row from the peer
/// rows of the same scenario.
pub fn compute_ratios(rows: &mut [Row]) {
    let peer_median = |rows: &[Row], scenario: &str, peer: &str| {
        rows.iter()
            .find(|r| r.scenario == scenario && r.contender == peer)
            .and_then(Row::median)
    };
    for i in 0..rows.len() {
        if !rows[i].contender.starts_with("childminder") {
            continue;
        }
        let Some(mine) = rows[i].median() else {
            continue;
        };
        let scenario = rows[i].scenario.clone();
        let ratio = |peer: Option<f64>| peer.filter(|p| *p != 0.0).map(|p| mine / p);
        rows[i].vs_std = ratio(peer_median(rows, &scenario, PEERS[0]));
        rows[i].vs_tokio = ratio(peer_median(rows, &scenario, PEERS[1]));
    }
}

/// A number with about four significant digits, never in exponent form.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

pub fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.2}x"))
}

/// The table as text, columns aligned.
pub fn render(rows: &[Row]) -> String {
    let header = [
        "scenario",
        "contender",
        "unit",
        "n",
        "median",
        "p95",
        "max",
        "vs std",
        "vs tokio",
        "note",
    ];
    let mut cells: Vec<[String; 10]> = Vec::new();
    for r in rows {
        let (n, median, p95, max) = match r.summary {
            Some(s) => (
                s.n.to_string(),
                fmt_num(s.median),
                if s.n > 1 { fmt_num(s.p95) } else { "-".into() },
                if s.n > 1 { fmt_num(s.max) } else { "-".into() },
            ),
            None => ("-".into(), "n/a".into(), "-".into(), "-".into()),
        };
        let arrow = match r.better {
            Better::Lower => "↓",
            Better::Higher => "↑",
        };
        cells.push([
            r.scenario.clone(),
            r.contender.clone(),
            format!("{} {arrow}", r.unit),
            n,
            median,
            p95,
            max,
            fmt_ratio(r.vs_std),
            fmt_ratio(r.vs_tokio),
            r.note.clone().unwrap_or_default(),
        ]);
    }
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let numeric = |i: usize| (3..=8).contains(&i);
    let line = |row: &[String]| {
        let mut s = String::new();
        for (i, c) in row.iter().enumerate() {
            let pad = widths[i] - c.chars().count();
            if i > 0 {
                s.push_str("  ");
            }
            if numeric(i) {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if i + 1 < row.len() {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s.trim_end().to_owned()
    };
    let mut out = line(&header.map(String::from));
    out.push('\n');
    let total: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
    out.push_str(&"-".repeat(total.min(160)));
    out.push('\n');
    let mut last_scenario = String::new();
    for (row, r) in cells.iter().zip(rows) {
        // A blank line between scenario groups (the part before ':').
        let group = r.scenario.split(':').next().unwrap_or_default().to_owned();
        if !last_scenario.is_empty() && group != last_scenario {
            out.push('\n');
        }
        last_scenario = group;
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

pub fn render_targets(targets: &[Target]) -> String {
    let mut out = String::new();
    for t in targets {
        let mark = match t.met {
            Some(true) => "MET   ",
            Some(false) => "MISSED",
            None => "-     ",
        };
        out.push_str(&format!("{mark}  {}: {}\n", t.target, t.measured));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_childminder_over_peer() {
        let mut rows = vec![
            Row::new("s", "childminder", "µs", Better::Lower, &[2.0]),
            Row::new("s", "std", "µs", Better::Lower, &[1.0]),
            Row::new("s", "tokio", "µs", Better::Lower, &[4.0]),
            Row::new("t", "std", "µs", Better::Lower, &[8.0]),
        ];
        compute_ratios(&mut rows);
        assert_eq!(rows[0].vs_std, Some(2.0));
        assert_eq!(rows[0].vs_tokio, Some(0.5));
        assert_eq!(rows[1].vs_std, None);
        assert!(render(&rows).contains("2.00x"));
    }
}
