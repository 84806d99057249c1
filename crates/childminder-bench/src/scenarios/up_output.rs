//! `childminder up`'s prefixed output against `sed 's/^/name | /'` on the
//! same stream: a file of text lines `cat` into a pipe, prefixed, read by
//! this process. MB/s of input, MB = 10^6 bytes.
//!
//! The binary is found as for the `cli` scenarios: `childminder` next to
//! this harness (`cargo build --release -p childminder-cli` first), or
//! `$CHILDMINDER_BIN`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use super::{CAT, Config, SH, count_blocking};
use crate::runner::{Contender, interleave, mb_per_s};
use crate::table::{Better, Row};

/// The process name, as in the issue: the prefix is `name | `.
const NAME: &str = "name";

/// Writes `bytes` of lines of varied length (like a log) to a file.
fn write_lines(path: &Path, bytes: u64) {
    let mut out = BufWriter::new(File::create(path).expect("creating the input"));
    let mut written = 0u64;
    let mut i = 0u64;
    while written < bytes {
        let line = format!(
            "2026-12-01T06:00:00.000Z INFO request {i} served in {} ms {}\n",
            i % 997,
            "x".repeat((i % 61) as usize)
        );
        out.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
        i += 1;
    }
    out.flush().unwrap();
}

/// Runs `cmd`, reads its stdout to the end, checks it is `expected` bytes.
fn run_counting(mut cmd: Command, expected: u64) -> f64 {
    let t = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawning the contender");
    let mut buf = vec![0; 64 * 1024];
    let got = count_blocking(child.stdout.as_mut().unwrap(), &mut buf);
    let status = child.wait().unwrap();
    let elapsed = t.elapsed();
    assert!(status.success(), "{status:?}");
    assert_eq!(got.bytes, expected, "bytes lost or invented");
    elapsed.as_secs_f64()
}

pub fn run(cfg: &Config) -> Vec<Row> {
    let bytes: u64 = cfg.pick(256 << 20, 32 << 20);
    let scenario = format!("up output {} MiB", bytes >> 20);
    let Some(bin) = super::cli::binary() else {
        let why = "no childminder binary: cargo build --release -p childminder-cli";
        return vec![Row::not_applicable(
            &scenario,
            "childminder up",
            "MB/s",
            Better::Higher,
            why,
        )];
    };
    let runs = cfg.pick(5, 3);
    let dir = std::env::temp_dir().join(format!("childminder-bench-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input: PathBuf = dir.join("lines.txt");
    write_lines(&input, bytes);
    let input_len = std::fs::metadata(&input).unwrap().len();
    let lines = {
        let text = std::fs::read(&input).unwrap();
        text.iter().filter(|&&b| b == b'\n').count() as u64
    };
    let expected = input_len + lines * format!("{NAME} | ").len() as u64;
    let procfile = dir.join("Procfile");
    std::fs::write(
        &procfile,
        format!("{NAME}: exec {CAT} {}\n", input.display()),
    )
    .unwrap();

    let mut contenders: Vec<Contender<'_, f64>> = vec![
        Contender::new("childminder up", || {
            let mut cmd = Command::new(&bin);
            cmd.env("NO_COLOR", "1").args(["up", "-f"]).arg(&procfile);
            run_counting(cmd, expected)
        }),
        Contender::new("sed", || {
            let mut cmd = Command::new(SH);
            cmd.arg("-c").arg(format!(
                "{CAT} '{}' | sed 's/^/{NAME} | /'",
                input.display()
            ));
            run_counting(cmd, expected)
        }),
    ];
    let samples = interleave(&mut contenders, 1, runs);
    let _ = std::fs::remove_dir_all(&dir);
    contenders
        .iter()
        .zip(samples)
        .map(|(c, secs)| {
            let rates: Vec<f64> = secs
                .iter()
                .map(|s| mb_per_s(input_len, std::time::Duration::from_secs_f64(*s)))
                .collect();
            Row::new(&scenario, c.name.clone(), "MB/s", Better::Higher, &rates)
                .with_note(format!("{} lines of input", lines))
        })
        .collect()
}
