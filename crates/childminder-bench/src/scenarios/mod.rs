//! The scenarios, one module per group. Each returns its table rows.

pub mod cli;
pub mod containment;
pub mod escalation;
pub mod latency;
pub mod restart;
pub mod scale;
pub mod spawn_wait;
pub mod throughput;
pub mod up_output;

/// The programs the children run, by absolute path so no contender pays
/// for a `PATH` search.
pub const TRUE: &str = "/usr/bin/true";
pub const CAT: &str = "/usr/bin/cat";
pub const HEAD: &str = "/usr/bin/head";
pub const SLEEP: &str = "/usr/bin/sleep";
pub const SH: &str = "/bin/sh";

/// What the scenarios need to know about the run.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub quick: bool,
}

impl Config {
    /// `full` in a full run, `quick` with `--quick`.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }
}

/// Bytes and the reads (or consumer calls) that brought them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    pub bytes: u64,
    pub reads: u64,
}

impl Counted {
    /// Counts a chunk of `n` bytes. An empty one (`with_process`'s end
    /// mark, not a read) counts nothing.
    pub fn add(&mut self, n: usize) {
        self.bytes += n as u64;
        self.reads += u64::from(n > 0);
    }
}

/// Reads `r` to its end in chunks of `buf`'s size, counting bytes.
pub async fn count_async(r: &mut (impl tokio::io::AsyncRead + Unpin), buf: &mut [u8]) -> Counted {
    use tokio::io::AsyncReadExt;
    let mut total = Counted::default();
    loop {
        match r.read(buf).await {
            Ok(0) => return total,
            Ok(n) => total.add(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading the child's output: {e}"),
        }
    }
}

/// Reads `r` to its end in chunks of `buf`'s size, counting bytes.
pub fn count_blocking(r: &mut impl std::io::Read, buf: &mut [u8]) -> Counted {
    let mut total = Counted::default();
    loop {
        match r.read(buf) {
            Ok(0) => return total,
            Ok(n) => total.add(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading the child's output: {e}"),
        }
    }
}
