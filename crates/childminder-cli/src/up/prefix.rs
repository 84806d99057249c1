//! The output of `childminder up`: every line of every child's stdout and
//! stderr, prefixed with the child's name padded to the longest name and
//! ` | `.
//!
//! This module is pure: [`LineAssembler`] cuts one stream's chunks into
//! whole lines; [`Prefixer`] keeps one assembler per stream and writes
//! prefixed lines into a buffer. Time is passed in, so the 1 s wait of a
//! partial line is tested without sleeping. The driver that owns stdout
//! and the timer is in `up::output`.

use std::time::{Duration, Instant};

/// How long a partial line waits for its newline before it is printed as
/// it is (the rest then follows on a line of its own).
pub const PARTIAL_LINE_WAIT: Duration = Duration::from_secs(1);

/// Cuts a byte stream into lines. Bytes come out exactly as they went in,
/// in order: the concatenation of everything emitted equals the input.
#[derive(Debug, Default)]
pub struct LineAssembler {
    /// The bytes after the last newline seen.
    partial: Vec<u8>,
    /// When the first byte of `partial` arrived.
    partial_since: Option<Instant>,
}

impl LineAssembler {
    /// Feeds `chunk`, received at `now`. `emit` gets each complete line,
    /// its newline included, in order; what follows the last newline waits.
    pub fn push(&mut self, chunk: &[u8], now: Instant, mut emit: impl FnMut(&[u8])) {
        let mut rest = chunk;
        if !self.partial.is_empty() {
            match memchr::memchr(b'\n', rest) {
                None => {
                    self.partial.extend_from_slice(rest);
                    return;
                }
                Some(i) => {
                    self.partial.extend_from_slice(&rest[..=i]);
                    emit(&self.partial);
                    self.partial.clear();
                    self.partial_since = None;
                    rest = &rest[i + 1..];
                }
            }
        }
        let mut start = 0;
        for i in memchr::memchr_iter(b'\n', rest) {
            emit(&rest[start..=i]);
            start = i + 1;
        }
        if start < rest.len() {
            self.partial.extend_from_slice(&rest[start..]);
            self.partial_since = Some(now);
        }
    }

    /// Emits the partial line, if any (without a newline: there is none).
    pub fn flush(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            emit(&self.partial);
            self.partial.clear();
        }
        self.partial_since = None;
    }

    /// When the partial line must be flushed, if there is one.
    pub fn deadline(&self) -> Option<Instant> {
        self.partial_since.map(|t| t + PARTIAL_LINE_WAIT)
    }
}

/// Identifies one stream of one child in a [`Prefixer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceId(usize);

/// The colours of the prefixes on a terminal, one per process, in turn.
const COLOURS: [u8; 6] = [36, 33, 32, 35, 34, 31];

/// Prefixes lines of several streams into one output.
#[derive(Debug)]
pub struct Prefixer {
    width: usize,
    colour: bool,
    sources: Vec<Source>,
}

#[derive(Debug)]
struct Source {
    prefix: Vec<u8>,
    lines: LineAssembler,
}

impl Prefixer {
    /// `names` are every name that will be shown (the prefixes are padded
    /// to the longest); `colour` colours each process's prefix.
    pub fn new<'a>(names: impl IntoIterator<Item = &'a str>, colour: bool) -> Prefixer {
        let width = names
            .into_iter()
            .map(|n| n.chars().count())
            .max()
            .unwrap_or(0);
        Prefixer {
            width,
            colour,
            sources: Vec::new(),
        }
    }

    /// Adds a stream of the process `name`, the `index`th process (which
    /// picks its colour).
    pub fn add_source(&mut self, name: &str, index: usize) -> SourceId {
        let padded = format!("{name:<width$} |", width = self.width);
        let prefix = if self.colour {
            let colour = COLOURS[index % COLOURS.len()];
            format!("\x1b[{colour}m{padded}\x1b[0m ")
        } else {
            format!("{padded} ")
        };
        self.sources.push(Source {
            prefix: prefix.into_bytes(),
            lines: LineAssembler::default(),
        });
        SourceId(self.sources.len() - 1)
    }

    /// Feeds a chunk of `source`, received at `now`; complete lines are
    /// appended to `out`, prefixed.
    pub fn feed(&mut self, source: SourceId, chunk: &[u8], now: Instant, out: &mut Vec<u8>) {
        let Source { prefix, lines } = &mut self.sources[source.0];
        lines.push(chunk, now, |line| {
            out.extend_from_slice(prefix);
            out.extend_from_slice(line);
        });
    }

    /// The stream `source` ended (or its process did): its partial line,
    /// if any, is appended to `out` with a newline.
    pub fn finish(&mut self, source: SourceId, out: &mut Vec<u8>) {
        let Source { prefix, lines } = &mut self.sources[source.0];
        lines.flush(|line| emit_unterminated(prefix, line, out));
    }

    /// Appends every partial line that has waited [`PARTIAL_LINE_WAIT`]
    /// by `now` to `out`, with a newline.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<u8>) {
        for Source { prefix, lines } in &mut self.sources {
            if lines.deadline().is_some_and(|d| d <= now) {
                lines.flush(|line| emit_unterminated(prefix, line, out));
            }
        }
    }

    /// The earliest time a partial line must be flushed.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.sources.iter().filter_map(|s| s.lines.deadline()).min()
    }
}

fn emit_unterminated(prefix: &[u8], line: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(prefix);
    out.extend_from_slice(line);
    out.push(b'\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lines_of(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, LineAssembler) {
        let mut a = LineAssembler::default();
        let mut lines = Vec::new();
        let now = Instant::now();
        for chunk in chunks {
            a.push(chunk, now, |l| lines.push(l.to_vec()));
        }
        (lines, a)
    }

    #[test]
    fn whole_lines_only() {
        let (lines, mut a) = lines_of(&[b"a\nb", b"c", b"\nd\n\ne"]);
        assert_eq!(lines, [&b"a\n"[..], b"bc\n", b"d\n", b"\n"]);
        let mut rest = Vec::new();
        a.flush(|l| rest.extend_from_slice(l));
        assert_eq!(rest, b"e");
        assert_eq!(a.deadline(), None);
    }

    #[test]
    fn the_partial_line_deadline_starts_at_its_first_byte() {
        let mut a = LineAssembler::default();
        let t0 = Instant::now();
        a.push(b"done", t0, |_| panic!("nothing complete"));
        assert_eq!(a.deadline(), Some(t0 + PARTIAL_LINE_WAIT));
        a.push(b" more", t0 + Duration::from_millis(500), |_| panic!());
        assert_eq!(a.deadline(), Some(t0 + PARTIAL_LINE_WAIT));
        a.push(b"\nnext", t0 + Duration::from_millis(700), |_| {});
        assert_eq!(
            a.deadline(),
            Some(t0 + Duration::from_millis(700) + PARTIAL_LINE_WAIT)
        );
        a.push(b"\n", t0 + Duration::from_millis(800), |_| {});
        assert_eq!(a.deadline(), None);
    }

    #[test]
    fn prefixes_are_padded_to_the_longest_name() {
        let mut p = Prefixer::new(["web", "worker"], false);
        let web = p.add_source("web", 0);
        let worker = p.add_source("worker", 1);
        let mut out = Vec::new();
        let now = Instant::now();
        p.feed(web, b"one\ntw", now, &mut out);
        p.feed(worker, b"x\n", now, &mut out);
        p.feed(web, b"o\n", now, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "web    | one\nworker | x\nweb    | two\n"
        );
    }

    #[test]
    fn a_partial_line_is_printed_after_the_wait_and_the_rest_on_its_own_line() {
        let mut p = Prefixer::new(["a"], false);
        let a = p.add_source("a", 0);
        let mut out = Vec::new();
        let t0 = Instant::now();
        p.feed(a, b"Password: ", t0, &mut out);
        assert_eq!(p.next_deadline(), Some(t0 + PARTIAL_LINE_WAIT));
        p.expire(t0 + Duration::from_millis(999), &mut out);
        assert!(out.is_empty());
        p.expire(t0 + PARTIAL_LINE_WAIT, &mut out);
        assert_eq!(out, b"a | Password: \n");
        assert_eq!(p.next_deadline(), None);
        p.feed(a, b"ok\nend", t0 + Duration::from_secs(2), &mut out);
        p.finish(a, &mut out);
        assert_eq!(out, b"a | Password: \na | ok\na | end\n");
        p.finish(a, &mut out);
        assert_eq!(out, b"a | Password: \na | ok\na | end\n");
    }

    #[test]
    fn colours_wrap_the_prefix_only() {
        let mut p = Prefixer::new(["a", "bb"], true);
        let a = p.add_source("a", 0);
        let b = p.add_source("bb", 1);
        let mut out = Vec::new();
        p.feed(a, b"x\n", Instant::now(), &mut out);
        p.feed(b, b"y\n", Instant::now(), &mut out);
        assert_eq!(out, b"\x1b[36ma  |\x1b[0m x\n\x1b[33mbb |\x1b[0m y\n");
    }

    proptest! {
        /// However the stream is cut into chunks, the lines' bodies put
        /// together are the stream, every emitted line but the last ends in
        /// a newline, and no complete line is held back.
        #[test]
        fn chunk_boundaries_never_change_the_bytes(
            data in proptest::collection::vec(prop_oneof![Just(b'\n'), any::<u8>()], 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..20),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut a = LineAssembler::default();
            let mut lines: Vec<Vec<u8>> = Vec::new();
            let mut prev = 0;
            let now = Instant::now();
            for cut in cuts.into_iter().chain([data.len()]) {
                a.push(&data[prev..cut], now, |l| lines.push(l.to_vec()));
                prev = cut;
            }
            let complete = lines.len();
            a.flush(|l| lines.push(l.to_vec()));
            prop_assert_eq!(lines.concat(), data.clone());
            for line in &lines[..complete] {
                prop_assert_eq!(line.last(), Some(&b'\n'));
                prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            }
            prop_assert!(lines[complete..].iter().all(|l| !l.contains(&b'\n') && !l.is_empty()));
            let newlines = data.iter().filter(|&&b| b == b'\n').count();
            prop_assert_eq!(complete, newlines);
        }

        /// Through the prefixer, with expiries in between: every output
        /// line is `prefix body`, and the bodies of one source put together
        /// (less the newlines the flushes added) are its stream.
        #[test]
        fn the_prefixer_keeps_every_stream_intact(
            ops in proptest::collection::vec(
                (0usize..2, proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'x'), Just(b'|')], 0..12), any::<bool>()),
                0..40),
        ) {
            let mut p = Prefixer::new(["a", "bb"], false);
            let ids = [p.add_source("a", 0), p.add_source("bb", 1)];
            let mut out = Vec::new();
            let mut sent = [Vec::new(), Vec::new()];
            let mut t = Instant::now();
            let mut flushes = Vec::new();
            for (src, chunk, expire) in ops {
                p.feed(ids[src], &chunk, t, &mut out);
                sent[src].extend_from_slice(&chunk);
                if expire {
                    t += PARTIAL_LINE_WAIT;
                    let before = out.len();
                    p.expire(t, &mut out);
                    flushes.push((before, out.len()));
                }
            }
            p.finish(ids[0], &mut out);
            p.finish(ids[1], &mut out);
            let mut got = [Vec::new(), Vec::new()];
            let text = String::from_utf8(out).unwrap();
            for line in text.split_inclusive('\n') {
                prop_assert!(line.ends_with('\n'));
                let (i, body) = if let Some(b) = line.strip_prefix("a  | ") {
                    (0, b)
                } else if let Some(b) = line.strip_prefix("bb | ") {
                    (1, b)
                } else {
                    return Err(TestCaseError::fail(format!("bad line {line:?}")));
                };
                got[i].push(body.to_owned());
            }
            for i in 0..2 {
                // Every flushed partial got a newline; the source's own
                // newlines are all there too, so removing newlines from both
                // sides compares the bytes.
                let sent_bytes: Vec<u8> = sent[i].iter().copied().filter(|&b| b != b'\n').collect();
                let got_bytes: Vec<u8> = got[i].concat().bytes().filter(|&b| b != b'\n').collect();
                prop_assert_eq!(sent_bytes, got_bytes);
                let sent_lines = sent[i].iter().filter(|&&b| b == b'\n').count();
                prop_assert!(got[i].len() >= sent_lines);
            }
        }
    }
}
