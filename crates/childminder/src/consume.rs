//! Ready-made consumers for [`with_process`](crate::with_process): a pipe
//! delivers chunks, not lines, and an unbounded capture is a memory bomb.
//!
//! - [`Lines`] splits a stream at `\n` (the last, unterminated line is
//!   delivered at the end), with a maximum line length.
//! - [`Capture`] keeps at most a byte limit of a stream — its head and its
//!   tail — and counts what it dropped in between: what Go keeps of stderr
//!   in `ExitError` (32 KiB) and execa's `maxBuffer`, but without losing
//!   the end, where the error message usually is.
//!
//! To get stdout and stderr as one stream in the order the child wrote
//! them, set [`Command::stderr`](crate::Command::stderr) to
//! [`Stdio::ToStdout`](crate::Stdio::ToStdout): one pipe for both, as `2>&1`.

use std::collections::VecDeque;
use std::io;

/// Default [`Lines::max_line_length`]: 1 MiB.
pub const DEFAULT_MAX_LINE: usize = 1024 * 1024;

/// Splits a byte stream into lines at `\n` and hands each line, without its
/// `\n`, to a callback.
///
/// - A line longer than the [maximum](Self::max_line_length) is delivered
///   in pieces of exactly that length (the last piece ends at the `\n`):
///   memory stays bounded and no byte is lost.
/// - The last line, if the stream does not end with `\n`, is delivered by
///   [`finish`](Self::finish) (which [`into_consumer`](Self::into_consumer)
///   calls at the stream's end), or when the `Lines` is dropped (an error
///   from the callback is then lost: call `finish` to see it). An empty
///   stream, or one ending in `\n`, delivers no extra empty line.
/// - Each line is delivered once, even if the callback panics on it.
/// - `\r` is kept: split `\r\n` text with `line.strip_suffix(b"\r")`.
///
/// [`with_process`](crate::with_process) ends each stream with an empty
/// chunk (its end mark) and drops the consumer, before the result is
/// published, so the last line arrives before
/// [`Process::wait`](crate::Process::wait) returns.
///
/// # Examples
///
/// ```
/// use childminder::consume::Lines;
/// use childminder::{discard, stdin, with_process, Command};
///
/// let mut lines = Vec::new();
/// with_process(
///     Command::new("printf").arg("one\ntwo\nno newline"),
///     stdin::empty(),
///     Lines::new(|line: &[u8]| {
///         lines.push(String::from_utf8_lossy(line).into_owned());
///         Ok(())
///     })
///     .into_consumer(),
///     discard,
///     |p| p.wait(),
/// )
/// .unwrap();
/// assert_eq!(lines, ["one", "two", "no newline"]);
/// ```
pub struct Lines<F>
where
    F: FnMut(&[u8]) -> io::Result<()>,
{
    on_line: F,
    partial: Vec<u8>,
    max_len: usize,
}

impl<F> Lines<F>
where
    F: FnMut(&[u8]) -> io::Result<()>,
{
    /// A splitter calling `on_line` for each line, with lines of at most
    /// [`DEFAULT_MAX_LINE`] bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut n = 0;
    /// let mut lines = childminder::consume::Lines::new(|_: &[u8]| { n += 1; Ok(()) });
    /// lines.feed(b"a\nb\n").unwrap();
    /// lines.finish().unwrap();
    /// drop(lines);
    /// assert_eq!(n, 2);
    /// ```
    pub fn new(on_line: F) -> Lines<F> {
        Lines {
            on_line,
            partial: Vec::new(),
            max_len: DEFAULT_MAX_LINE,
        }
    }

    /// The longest line delivered whole; longer ones arrive in pieces of
    /// this length. At least 1 (0 is taken as 1).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut got = Vec::new();
    /// let mut lines = childminder::consume::Lines::new(|l: &[u8]| { got.push(l.to_vec()); Ok(()) })
    ///     .max_line_length(3);
    /// lines.feed(b"abcdefg\n").unwrap();
    /// drop(lines);
    /// assert_eq!(got, [b"abc".to_vec(), b"def".to_vec(), b"g".to_vec()]);
    /// ```
    pub fn max_line_length(mut self, max: usize) -> Lines<F> {
        self.max_len = max.max(1);
        self
    }

    /// Takes the next chunk of the stream, delivering every line it
    /// completes.
    ///
    /// # Errors
    ///
    /// The callback's first error; the rest of the chunk is not delivered.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut got = Vec::new();
    /// let mut lines = childminder::consume::Lines::new(|l: &[u8]| { got.push(l.to_vec()); Ok(()) });
    /// lines.feed(b"hel").unwrap();
    /// lines.feed(b"lo\nwor").unwrap();
    /// lines.finish().unwrap();
    /// drop(lines);
    /// assert_eq!(got, [b"hello".to_vec(), b"wor".to_vec()]);
    /// ```
    pub fn feed(&mut self, mut chunk: &[u8]) -> io::Result<()> {
        while !chunk.is_empty() {
            let room = self.max_len - self.partial.len();
            // One byte past the room: a `\n` right after a full line ends it.
            // (Saturating: `usize::MAX` is how "no limit" is written.)
            let window = &chunk[..chunk.len().min(room.saturating_add(1))];
            match window.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    self.deliver(&chunk[..nl])?;
                    chunk = &chunk[nl + 1..];
                }
                None if window.len() > room => {
                    self.deliver(&chunk[..room])?;
                    chunk = &chunk[room..];
                }
                None => {
                    self.partial.extend_from_slice(window);
                    chunk = &[];
                }
            }
        }
        Ok(())
    }

    /// Delivers `partial + tail` as one line and empties `partial`, even
    /// when the callback panics (the line was delivered: an acceptance test
    /// caught it handed over a second time by the drop).
    fn deliver(&mut self, tail: &[u8]) -> io::Result<()> {
        if self.partial.is_empty() {
            return (self.on_line)(tail);
        }
        let mut line = std::mem::take(&mut self.partial);
        line.extend_from_slice(tail);
        let outcome = (self.on_line)(&line);
        line.clear();
        self.partial = line;
        outcome
    }

    /// Ends the stream: delivers the last line if it had no `\n`. A second
    /// call, or the drop, then has nothing left to deliver (unless more was
    /// fed in between, which starts a new line).
    ///
    /// # Errors
    ///
    /// The callback's error for that last line.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut lines = childminder::consume::Lines::new(|l: &[u8]| {
    ///     assert_eq!(l, b"tail");
    ///     Ok(())
    /// });
    /// lines.feed(b"tail").unwrap();
    /// lines.finish().unwrap();
    /// ```
    pub fn finish(&mut self) -> io::Result<()> {
        if self.partial.is_empty() {
            return Ok(());
        }
        self.deliver(&[])
    }

    /// This splitter as a consumer for [`with_process`](crate::with_process):
    /// each chunk goes to [`feed`](Self::feed), and an empty one (the end
    /// mark `with_process` passes once, at the stream's end) to
    /// [`finish`](Self::finish), so the last line's error is recorded in
    /// [`worker_errors`](crate::SupervisionResult::worker_errors) like any
    /// other line's. (Called by hand, an empty chunk ends the line in
    /// progress.)
    ///
    /// # Examples
    ///
    /// ```
    /// use childminder::consume::Lines;
    /// let mut count = 0;
    /// let out = Lines::new(|_: &[u8]| { count += 1; Ok(()) }).into_consumer();
    /// childminder::with_process(
    ///     childminder::Command::new("seq").arg("5"),
    ///     childminder::stdin::empty(), out, childminder::discard, |p| p.wait(),
    /// ).unwrap();
    /// assert_eq!(count, 5);
    /// ```
    pub fn into_consumer(mut self) -> impl FnMut(&[u8]) -> io::Result<()> {
        move |chunk: &[u8]| {
            if chunk.is_empty() {
                self.finish()
            } else {
                self.feed(chunk)
            }
        }
    }
}

impl<F> Drop for Lines<F>
where
    F: FnMut(&[u8]) -> io::Result<()>,
{
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

impl<F> std::fmt::Debug for Lines<F>
where
    F: FnMut(&[u8]) -> io::Result<()>,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines")
            .field("pending", &self.partial.len())
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

/// Keeps at most `limit` bytes of a stream: the first half (the head) and
/// the last half (the tail), counting what was dropped in between. A
/// stream of at most `limit` bytes is kept whole.
///
/// # Examples
///
/// ```
/// use childminder::consume::Capture;
/// use childminder::{discard, stdin, with_process, Command};
///
/// let mut err = Capture::new(8);
/// with_process(
///     Command::new("sh").args(["-c", "echo 0123456789abcdef >&2"]),
///     stdin::empty(),
///     discard,
///     err.consumer(),
///     |p| p.wait(),
/// )
/// .unwrap();
/// assert_eq!(err.total_len(), 17);
/// assert_eq!(err.head(), b"0123");
/// assert_eq!(err.tail(), b"def\n");
/// assert_eq!(err.dropped(), 9);
/// assert_eq!(err.to_string_lossy(), "0123\n[... 9 bytes dropped ...]\ndef\n");
/// ```
#[derive(Debug, Clone)]
pub struct Capture {
    head: Vec<u8>,
    head_cap: usize,
    tail: VecDeque<u8>,
    tail_cap: usize,
    total: u64,
}

impl Capture {
    /// A capture keeping at most `limit` bytes: `limit - limit / 2` of the
    /// head and `limit / 2` of the tail.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = childminder::consume::Capture::new(32 * 1024);
    /// c.push(b"short");
    /// assert_eq!(c.to_vec(), b"short");
    /// ```
    pub fn new(limit: usize) -> Capture {
        let tail_cap = limit / 2;
        Capture {
            head: Vec::new(),
            head_cap: limit - tail_cap,
            tail: VecDeque::new(),
            tail_cap,
            total: 0,
        }
    }

    /// Adds the next chunk of the stream.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = childminder::consume::Capture::new(4);
    /// c.push(b"abc");
    /// c.push(b"def");
    /// assert_eq!((c.head(), c.tail(), c.dropped()), (&b"ab"[..], b"ef".to_vec(), 2));
    /// ```
    pub fn push(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        let to_head = chunk.len().min(self.head_cap - self.head.len());
        self.head.extend_from_slice(&chunk[..to_head]);
        let rest = &chunk[to_head..];
        if rest.len() >= self.tail_cap {
            self.tail.clear();
            self.tail.extend(&rest[rest.len() - self.tail_cap..]);
            return;
        }
        let overflow = (self.tail.len() + rest.len()).saturating_sub(self.tail_cap);
        self.tail.drain(..overflow);
        self.tail.extend(rest);
    }

    /// A consumer for [`with_process`](crate::with_process) that pushes
    /// every chunk here.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = childminder::consume::Capture::new(1024);
    /// let echo = childminder::Command::new("echo").arg("hi").clone();
    /// childminder::with_process(&echo, childminder::stdin::empty(), c.consumer(),
    ///     childminder::discard, |p| p.wait()).unwrap();
    /// assert_eq!(c.to_vec(), b"hi\n");
    /// ```
    pub fn consumer(&mut self) -> impl FnMut(&[u8]) -> io::Result<()> + Send + '_ {
        |chunk: &[u8]| {
            self.push(chunk);
            Ok(())
        }
    }

    /// The first bytes of the stream (all of it if nothing was dropped and
    /// it fits the head).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = childminder::consume::Capture::new(2);
    /// c.push(b"xyz");
    /// assert_eq!(c.head(), b"x");
    /// ```
    pub fn head(&self) -> &[u8] {
        &self.head
    }

    /// The last bytes of the stream that are not part of the head.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = childminder::consume::Capture::new(2);
    /// c.push(b"xyz");
    /// assert_eq!(c.tail(), b"z");
    /// ```
    pub fn tail(&self) -> Vec<u8> {
        self.tail.iter().copied().collect()
    }

    /// Bytes seen in all.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = childminder::consume::Capture::new(0);
    /// c.push(b"xyz");
    /// assert_eq!(c.total_len(), 3);
    /// ```
    pub fn total_len(&self) -> u64 {
        self.total
    }

    /// Bytes dropped between the head and the tail.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = childminder::consume::Capture::new(2);
    /// c.push(b"abcdef");
    /// assert_eq!(c.dropped(), 4);
    /// ```
    pub fn dropped(&self) -> u64 {
        self.total - (self.head.len() + self.tail.len()) as u64
    }

    /// Whether anything was dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = childminder::consume::Capture::new(4);
    /// c.push(b"abcd");
    /// assert!(!c.is_truncated());
    /// c.push(b"e");
    /// assert!(c.is_truncated());
    /// ```
    pub fn is_truncated(&self) -> bool {
        self.dropped() > 0
    }

    /// The head and the tail, joined (the whole stream when nothing was
    /// dropped).
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = childminder::consume::Capture::new(4);
    /// c.push(b"abcdef");
    /// assert_eq!(c.to_vec(), b"abef");
    /// ```
    pub fn to_vec(&self) -> Vec<u8> {
        let mut all = self.head.clone();
        all.extend(&self.tail);
        all
    }

    /// The capture as text (invalid UTF-8 replaced), with a line
    /// `[... N bytes dropped ...]` between the head and the tail when
    /// something was dropped.
    ///
    /// # Examples
    ///
    /// ```
    /// let mut c = childminder::consume::Capture::new(4);
    /// c.push(b"abcdef");
    /// assert_eq!(c.to_string_lossy(), "ab\n[... 2 bytes dropped ...]\nef");
    /// ```
    pub fn to_string_lossy(&self) -> String {
        if !self.is_truncated() {
            return String::from_utf8_lossy(&self.to_vec()).into_owned();
        }
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("[... {} bytes dropped ...]\n", self.dropped()));
        text.push_str(&String::from_utf8_lossy(&self.tail()));
        text
    }
}
