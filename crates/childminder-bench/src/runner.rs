//! Running contenders interleaved, run by run, so a machine whose speed
//! drifts during the benchmark hits them alike; each round in a new order
//! (A B C, C A B, B C A, ...), so what one contender leaves behind when it
//! returns (a thread still closing a pipe, a cold cache) falls on every
//! other contender alike instead of always on the one after it.

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
/// one `warmup` times (discarded), then `runs` rounds of one run each, each
/// round in its own order (see [`round_orders`]). Returns every remaining
/// contender's samples, in the order of `contenders`.
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
    let mut orders = round_orders(contenders.len());
    for _ in 0..runs {
        for index in orders.next_round() {
            samples[index].push((contenders[index].run)());
        }
    }
    samples
}

/// The order of each round: a shuffle of `0..n` from a fixed seed, so two
/// runs of the harness take the same orders, and over many rounds every
/// contender follows every other about equally often.
pub fn round_orders(n: usize) -> RoundOrders {
    RoundOrders {
        order: (0..n).collect(),
        state: 0x9E37_79B9_7F4A_7C15,
    }
}

pub struct RoundOrders {
    order: Vec<usize>,
    state: u64,
}

impl RoundOrders {
    /// The next round's order (Fisher-Yates on xorshift64: the harness
    /// needs no statistical quality, only every order reachable).
    pub fn next_round(&mut self) -> Vec<usize> {
        for i in (1..self.order.len()).rev() {
            self.state ^= self.state << 13;
            self.state ^= self.state >> 7;
            self.state ^= self.state << 17;
            let j = (self.state % (i as u64 + 1)) as usize;
            self.order.swap(i, j);
        }
        self.order.clone()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_round_runs_each_contender_once_and_each_follows_every_other() {
        let n = 5;
        let mut orders = round_orders(n);
        let mut follows = vec![vec![0usize; n]; n];
        for _ in 0..2_000 {
            let order = orders.next_round();
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>(), "{order:?}");
            for pair in order.windows(2) {
                follows[pair[0]][pair[1]] += 1;
            }
        }
        // 2,000 rounds of 4 pairs over 20 ordered pairs: 400 each on
        // average; a fixed order would give 2,000 to four pairs and 0 to
        // the rest.
        for (a, row) in follows.iter().enumerate() {
            for (b, &count) in row.iter().enumerate() {
                if a != b {
                    assert!((250..=550).contains(&count), "{b} after {a}: {count} times");
                }
            }
        }
    }

    #[test]
    fn the_orders_are_the_same_in_every_run_of_the_harness() {
        let (mut first, mut second) = (round_orders(4), round_orders(4));
        for _ in 0..10 {
            assert_eq!(first.next_round(), second.next_round());
        }
    }
}
