//! Running contenders interleaved, run by run (A B C A B C ...), so a
//! machine whose speed drifts during the benchmark hits them alike.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::runtime::Runtime;

/// One contender of a scenario: a name and one run, returning its sample.
pub struct Contender<'a, T> {
    pub name: String,
    pub run: Box<dyn FnMut() -> T + 'a>,
}

impl<'a, T> Contender<'a, T> {
    pub fn new(name: impl Into<String>, run: impl FnMut() -> T + 'a) -> Contender<'a, T> {
        Contender {
            name: name.into(),
            run: Box::new(run),
        }
    }
}

static SELECTED: OnceLock<Vec<String>> = OnceLock::new();

/// Restricts every scenario to these contenders (`--contender`); empty: all.
pub fn select_contenders(names: Vec<String>) {
    SELECTED.set(names).expect("contenders selected twice");
}

/// Whether `--contender` lets `name` run (a `mode|name` is matched on
/// its name).
pub fn selected(name: &str) -> bool {
    let name = name.rsplit('|').next().unwrap_or(name);
    SELECTED
        .get()
        .is_none_or(|s| s.is_empty() || s.iter().any(|n| n == name))
}

/// Drops the contenders `--contender` excludes, then runs each remaining
/// one `warmup` times (discarded), then `runs` rounds of one run each, in
/// order. Returns every remaining contender's samples, in the order of
/// `contenders`.
pub fn interleave<T>(
    contenders: &mut Vec<Contender<'_, T>>,
    warmup: usize,
    runs: usize,
) -> Vec<Vec<T>> {
    contenders.retain(|c| selected(&c.name));
    for _ in 0..warmup {
        for c in contenders.iter_mut() {
            (c.run)();
        }
    }
    let mut samples: Vec<Vec<T>> = contenders
        .iter()
        .map(|_| Vec::with_capacity(runs))
        .collect();
    for _ in 0..runs {
        for (c, s) in contenders.iter_mut().zip(&mut samples) {
            s.push((c.run)());
        }
    }
    samples
}

/// Runs `fut` as a task on a worker of `rt` (where a server's code runs)
/// and blocks until it is done. Async contenders time themselves inside
/// the future, so the hand-off to and from the worker is not counted.
pub fn on_runtime<F>(rt: &Runtime, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    rt.block_on(async move { tokio::spawn(fut).await.expect("benchmark task panicked") })
}

pub fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

pub fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// MB/s with MB = 10^6 bytes.
pub fn mb_per_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}
