//! What feeds the child's stdin in [`with_process`](crate::with_process).
//!
//! Anything that is `FnMut() -> io::Result<Option<Vec<u8>>> + Send + 'static`
//! is a producer, the seed's `IO (Maybe ByteString)`: `Ok(Some(bytes))` is
//! the next chunk, `Ok(None)` closes stdin, `Err` is recorded as a worker
//! failure and closes stdin.
//!
//! A producer runs on a thread of its own, so a producer that blocks never
//! blocks the supervision. It must be `'static` because a producer stuck in
//! its own call cannot be interrupted: teardown closes stdin, and leaves the
//! thread to end when the call returns (without calling it again). A
//! producer that is not inside a call when the teardown ends has its thread
//! joined before `with_process` returns.

use std::io::{self, Read};

/// The source of the child's stdin: build one with [`empty`], [`bytes`],
/// [`from_fn`] or [`from_reader`], or pass a producer closure directly.
///
/// # Examples
///
/// ```
/// use childminder::{stdin, with_process, Command};
///
/// let mut chunks = vec![b"b\n".to_vec(), b"a\n".to_vec()].into_iter();
/// let mut out = Vec::new();
/// with_process(
///     &Command::new("sort"),
///     move || Ok(chunks.next()),
///     |c: &[u8]| { out.extend_from_slice(c); Ok(()) },
///     childminder::discard,
///     |p| p.wait(),
/// ).unwrap();
/// assert_eq!(out, b"a\nb\n");
/// ```
pub struct Input(pub(crate) Source);

pub(crate) type Producer = Box<dyn FnMut() -> io::Result<Option<Vec<u8>>> + Send + 'static>;

pub(crate) enum Source {
    Empty,
    Bytes(Vec<u8>),
    Producer(Producer),
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Source::Empty => f.write_str("Input::Empty"),
            Source::Bytes(b) => write!(f, "Input::Bytes({} bytes)", b.len()),
            Source::Producer(_) => f.write_str("Input::Producer"),
        }
    }
}

/// No input: the child's stdin is closed at once (it reads end-of-file).
///
/// # Examples
///
/// ```
/// let out = childminder::Command::new("cat").output().unwrap();
/// assert!(out.stdout.is_empty());
/// ```
pub fn empty() -> Input {
    Input(Source::Empty)
}

/// Writes `data`, then closes stdin. No thread is started for it.
///
/// # Examples
///
/// ```
/// use childminder::{stdin, with_process, Command};
/// let mut got = Vec::new();
/// with_process(&Command::new("cat"), stdin::bytes("hi"),
///     |c: &[u8]| { got.extend_from_slice(c); Ok(()) }, childminder::discard, |p| p.wait()).unwrap();
/// assert_eq!(got, b"hi");
/// ```
pub fn bytes(data: impl Into<Vec<u8>>) -> Input {
    Input(Source::Bytes(data.into()))
}

/// A producer closure (the same as passing the closure itself).
///
/// # Examples
///
/// ```
/// let mut left = 3;
/// let input = childminder::stdin::from_fn(move || {
///     left -= 1;
///     Ok((left > 0).then(|| b"line\n".to_vec()))
/// });
/// ```
pub fn from_fn<F>(producer: F) -> Input
where
    F: FnMut() -> io::Result<Option<Vec<u8>>> + Send + 'static,
{
    Input(Source::Producer(Box::new(producer)))
}

/// Copies a reader (a file, a socket, this process's stdin) into the
/// child's stdin in 64 KiB chunks, then closes it.
///
/// # Examples
///
/// ```
/// let file = std::fs::File::open("/etc/hostname").unwrap();
/// let input = childminder::stdin::from_reader(file);
/// ```
pub fn from_reader<R: Read + Send + 'static>(mut reader: R) -> Input {
    from_fn(move || {
        let mut buf = vec![0; 64 * 1024];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => {
                    buf.truncate(n);
                    return Ok(Some(buf));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    })
}

impl<F> From<F> for Input
where
    F: FnMut() -> io::Result<Option<Vec<u8>>> + Send + 'static,
{
    fn from(producer: F) -> Input {
        from_fn(producer)
    }
}
