//! The ready-made consumers (`consume::Lines`, `consume::Capture`) and the
//! merged stream (`Stdio::ToStdout`): property tests over every way a
//! stream can be cut into chunks, then real children.

mod common;
#[path = "common/support.rs"]
mod support;

use std::io::{self, Read};

use childminder::consume::{Capture, Lines};
use childminder::{Command, Error, Stdio, discard, stdin, with_process};
use common::LeakCheck;
use proptest::prelude::*;
use support::{fixture_cmd, pattern, warm_up};

/// What `Lines` must deliver: the stream split at `\n`, each line cut into
/// pieces of `max`, and no extra empty line after a final `\n`.
fn model_lines(data: &[u8], max: usize) -> Vec<Vec<u8>> {
    let parts: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let mut lines = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        if i == parts.len() - 1 && part.is_empty() {
            break;
        }
        if part.is_empty() {
            lines.push(Vec::new());
        }
        lines.extend(part.chunks(max).map(<[u8]>::to_vec));
    }
    lines
}

/// Cuts `data` at the given points (taken modulo its length).
fn chunks_at(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.push(0);
    points.push(data.len());
    points.sort_unstable();
    points
        .windows(2)
        .map(|w| data[w[0]..w[1]].to_vec())
        // A pipe never gives an empty chunk; to a consumer it is the end mark.
        .filter(|chunk| !chunk.is_empty())
        .collect()
}

fn split_with(chunks: &[Vec<u8>], max: usize) -> Vec<Vec<u8>> {
    let mut got = Vec::new();
    let mut lines = Lines::new(|l: &[u8]| {
        got.push(l.to_vec());
        Ok(())
    })
    .max_line_length(max);
    for chunk in chunks {
        lines.feed(chunk).unwrap();
    }
    lines.finish().unwrap();
    drop(lines);
    got
}

fn stream() -> impl Strategy<Value = Vec<u8>> {
    // Mostly letters, often newlines, so lines are short and long.
    proptest::collection::vec(prop_oneof![4 => b'a'..=b'e', 1 => Just(b'\n')], 0..200)
}

proptest! {
    #[test]
    fn lines_are_the_same_however_the_stream_is_chunked(
        data in stream(),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
        max in 1usize..12,
    ) {
        let chunks = chunks_at(&data, &cuts);
        prop_assert_eq!(split_with(&chunks, max), model_lines(&data, max));
    }

    #[test]
    fn lines_flushed_by_drop_equal_lines_flushed_by_finish(
        data in stream(),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut got = Vec::new();
        let mut consumer = Lines::new(|l: &[u8]| { got.push(l.to_vec()); Ok(()) }).into_consumer();
        for chunk in chunks_at(&data, &cuts) {
            consumer(&chunk).unwrap();
        }
        drop(consumer);
        prop_assert_eq!(got, model_lines(&data, childminder::consume::DEFAULT_MAX_LINE));
    }

    #[test]
    fn lines_flushed_by_the_end_mark_equal_the_model_and_the_drop_adds_none(
        data in stream(),
        cuts in proptest::collection::vec(any::<usize>(), 0..10),
    ) {
        let got = std::cell::RefCell::new(Vec::new());
        let mut consumer =
            Lines::new(|l: &[u8]| { got.borrow_mut().push(l.to_vec()); Ok(()) }).into_consumer();
        for chunk in chunks_at(&data, &cuts) {
            consumer(&chunk).unwrap();
        }
        consumer(&[]).unwrap();
        let model = model_lines(&data, childminder::consume::DEFAULT_MAX_LINE);
        // Delivered by the end mark itself, not by the drop.
        prop_assert_eq!(&*got.borrow(), &model);
        consumer(&[]).unwrap();
        drop(consumer);
        prop_assert_eq!(&*got.borrow(), &model);
    }

    #[test]
    fn capture_keeps_the_head_and_the_tail_however_the_stream_is_chunked(
        data in proptest::collection::vec(any::<u8>(), 0..300),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
        limit in 0usize..64,
    ) {
        let mut capture = Capture::new(limit);
        for chunk in chunks_at(&data, &cuts) {
            capture.push(&chunk);
        }
        let head_len = data.len().min(limit - limit / 2);
        let tail_start = data.len().saturating_sub(limit / 2).max(head_len);
        prop_assert_eq!(capture.head(), &data[..head_len]);
        prop_assert_eq!(capture.tail(), &data[tail_start..]);
        prop_assert_eq!(capture.total_len(), data.len() as u64);
        prop_assert_eq!(capture.dropped(), (tail_start - head_len) as u64);
        prop_assert_eq!(capture.is_truncated(), data.len() > limit);
        if data.len() <= limit {
            prop_assert_eq!(capture.to_vec(), data.clone());
        }
    }
}

#[test]
fn a_callback_error_stops_the_chunk_and_is_returned() {
    let mut seen = Vec::new();
    let mut lines = Lines::new(|l: &[u8]| {
        seen.push(l.to_vec());
        if l == b"bad" {
            Err(io::Error::other("refused"))
        } else {
            Ok(())
        }
    });
    let err = lines.feed(b"ok\nbad\nnever\n").unwrap_err();
    assert_eq!(err.to_string(), "refused");
    lines.feed(b"tail").unwrap();
    let err = {
        let mut failing = Lines::new(|_: &[u8]| Err(io::Error::other("last")));
        failing.feed(b"no newline").unwrap();
        failing.finish().unwrap_err()
    };
    assert_eq!(err.to_string(), "last");
    drop(lines);
    assert_eq!(seen, [b"ok".to_vec(), b"bad".to_vec(), b"tail".to_vec()]);
}

/// Caught by an acceptance test: `usize::MAX`, the natural "no limit",
/// overflowed `room + 1`: a panic in debug, and in release every byte lost.
#[test]
fn a_maximum_of_usize_max_is_no_limit_and_loses_nothing() {
    let data = b"one\ntwo\nthree".to_vec();
    let cuts = [2, 5, 9];
    assert_eq!(
        split_with(&chunks_at(&data, &cuts), usize::MAX),
        [b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
    );
}

/// Caught by an acceptance test: a callback that panicked on a line that
/// spanned two chunks got it again from the drop (the buffer was not
/// emptied on the way out).
#[test]
fn a_line_the_callback_panicked_on_is_delivered_once() {
    let calls = std::cell::RefCell::new(Vec::new());
    let mut lines = Lines::new(|l: &[u8]| {
        calls.borrow_mut().push(l.to_vec());
        assert_ne!(l, b"bad", "the callback refuses this line");
        Ok(())
    });
    lines.feed(b"ba").unwrap();
    let fed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lines.feed(b"d\nok\n")));
    assert!(fed.is_err());
    lines.feed(b"after\n").unwrap();
    drop(lines);
    assert_eq!(*calls.borrow(), [b"bad".to_vec(), b"after".to_vec()]);
}

/// Caught by an acceptance test: through `into_consumer`, the callback's
/// error on a last line without `\n` came from the drop, where it was
/// lost: the same error was recorded or not depending on whether the
/// child ended its output with a newline.
#[test]
fn an_error_on_the_last_unterminated_line_is_recorded() {
    warm_up();
    let leak = LeakCheck::new();
    for output in ["ok\nbad", "ok\nbad\n"] {
        let refuse_bad = |l: &[u8]| {
            if l == b"bad" {
                Err(io::Error::other("rejected"))
            } else {
                Ok(())
            }
        };
        let r = with_process(
            Command::new("printf").arg(output),
            stdin::empty(),
            Lines::new(refuse_bad).into_consumer(),
            discard,
            |p| p.wait(),
        )
        .unwrap();
        assert!(!r.success(), "{output:?}: {r:?}");
        assert_eq!(r.worker_errors.len(), 1, "{output:?}: {r:?}");
        assert!(
            r.worker_errors[0].to_string().contains("rejected"),
            "{output:?}: {r:?}"
        );
    }
    leak.assert_clean();
}

/// A consumer that keeps every chunk it is given, as it was given.
fn recorder(chunks: &mut Vec<Vec<u8>>) -> impl FnMut(&[u8]) -> io::Result<()> + Send + '_ {
    move |c: &[u8]| {
        chunks.push(c.to_vec());
        Ok(())
    }
}

/// A consumer that failed is called no more: not even with the end mark
/// (its failure is the one recorded; its pipe was closed at once).
#[test]
fn a_consumer_that_failed_gets_no_end_mark() {
    warm_up();
    let leak = LeakCheck::new();
    let mut calls = Vec::new();
    let r = with_process(
        &fixture_cmd(["write", "200000"]),
        stdin::empty(),
        |c: &[u8]| {
            calls.push(c.len());
            Err(io::Error::other("enough"))
        },
        discard,
        |p| p.wait(),
    )
    .unwrap();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(calls[0] > 0, "{calls:?}");
    assert_eq!(r.worker_errors.len(), 1, "{r:?}");
    leak.assert_clean();
}

/// The end mark: one empty chunk per stream, after its last byte, whether
/// the stream reached its end of file or was cut off (a grandchild holding
/// it open past the grace period).
#[test]
fn each_stream_ends_with_one_empty_chunk() {
    warm_up();
    let leak = LeakCheck::new();
    for (args, cut_off) in [
        (&["print-then-exit", "text", "0"][..], false),
        (&["grandchild-holds-pipes", "30"][..], true),
    ] {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut cmd = fixture_cmd(args);
        cmd.grace_period(std::time::Duration::from_millis(200));
        let r = with_process(
            &cmd,
            stdin::empty(),
            recorder(&mut out),
            recorder(&mut err),
            |p| p.wait(),
        )
        .unwrap();
        assert_eq!(r.output_cut_off, cut_off, "{r:?}");
        for chunks in [&out, &err] {
            let empty: Vec<usize> = (0..chunks.len())
                .filter(|&i| chunks[i].is_empty())
                .collect();
            assert_eq!(empty, [chunks.len() - 1], "{args:?}: {chunks:?}");
        }
        assert!(
            out.concat().starts_with(b"ready") || out.concat() == b"text\n",
            "{out:?}"
        );
        if cut_off {
            let gpid: i32 = String::from_utf8_lossy(&out.concat())
                .trim()
                .strip_prefix("ready ")
                .unwrap()
                .parse()
                .unwrap();
            support::assert_all_dead(&[gpid]);
        }
    }
    leak.assert_clean();
}

#[test]
fn a_zero_line_length_means_one_byte() {
    assert_eq!(
        split_with(&[b"ab\n".to_vec()], 0),
        [b"a".to_vec(), b"b".to_vec()]
    );
}

#[test]
fn lines_of_a_real_child_in_small_reads_match_its_output() {
    warm_up();
    let leak = LeakCheck::new();
    let total = 300_000;
    let mut got = Vec::new();
    let mut cmd = fixture_cmd(["write", &total.to_string()]);
    cmd.buffer_size(997);
    let r = with_process(
        &cmd,
        stdin::empty(),
        Lines::new(|l: &[u8]| {
            got.push(l.to_vec());
            Ok(())
        })
        .max_line_length(100)
        .into_consumer(),
        discard,
        |p| p.wait(),
    )
    .unwrap();
    assert!(r.success(), "{r:?}");
    // The last line has no `\n`: it arrived through the drop, before wait().
    assert_eq!(got, model_lines(&pattern(0, total), 100));
    leak.assert_clean();
}

#[test]
fn capture_of_a_real_childs_stderr_keeps_its_first_and_last_bytes() {
    warm_up();
    let leak = LeakCheck::new();
    let total = 1 << 20;
    let mut capture = Capture::new(32 * 1024);
    let r = with_process(
        &fixture_cmd(["write", &total.to_string(), "err"]),
        stdin::empty(),
        discard,
        capture.consumer(),
        |p| p.wait(),
    )
    .unwrap();
    assert!(r.success(), "{r:?}");
    assert_eq!(capture.total_len(), total as u64);
    assert_eq!(capture.head(), pattern(0, 16 * 1024));
    assert_eq!(
        capture.tail(),
        pattern((total - 16 * 1024) as u64, 16 * 1024)
    );
    assert_eq!(capture.dropped(), (total - 32 * 1024) as u64);
    leak.assert_clean();
}

fn interleaved(n: u32) -> String {
    (0..n).map(|i| format!("out {i}\nerr {i}\n")).collect()
}

#[test]
fn merged_stderr_arrives_in_the_order_the_child_wrote_it() {
    warm_up();
    let leak = LeakCheck::new();
    let out = fixture_cmd(["interleave", "2000"])
        .stderr(Stdio::ToStdout)
        .output()
        .unwrap();
    assert!(out.result.success(), "{:?}", out.result);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), interleaved(2000));
    assert!(out.stderr.is_empty());
    leak.assert_clean();
}

#[test]
fn merged_stderr_reaches_the_async_childs_stdout_in_order() {
    warm_up();
    let leak = LeakCheck::new();
    let runtime = support::current_thread_runtime();
    runtime.block_on(async {
        use tokio::io::AsyncReadExt;
        let mut cmd = fixture_cmd(["interleave", "500"]);
        cmd.stderr(Stdio::ToStdout);
        let mut child = cmd.spawn().unwrap();
        assert!(child.stderr.is_none());
        let mut text = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut text)
            .await
            .unwrap();
        assert_eq!(text, interleaved(500));
        assert!(child.wait().await.success());
    });
    drop(runtime);
    leak.assert_clean();
}

#[test]
fn merged_stderr_follows_stdout_to_a_file_and_to_null() {
    warm_up();
    let leak = LeakCheck::new();
    let scratch = support::Scratch::new("merged");
    let path = scratch.path().join("out.txt");
    let file = std::fs::File::create(&path).unwrap();
    let r = fixture_cmd(["interleave", "3"])
        .stdout(file)
        .stderr(Stdio::ToStdout)
        .run()
        .unwrap();
    assert!(r.success(), "{r:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), interleaved(3));

    let out = fixture_cmd(["interleave", "3"])
        .stdout(Stdio::Null)
        .stderr(Stdio::ToStdout)
        .output()
        .unwrap();
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
    leak.assert_clean();
}

#[test]
fn to_stdout_is_rejected_for_stdin_and_stdout() {
    for cmd in [
        Command::new("true").stdin(Stdio::ToStdout).clone(),
        Command::new("true").stdout(Stdio::ToStdout).clone(),
    ] {
        match cmd.run() {
            Err(Error::InvalidOptions { reason, .. }) => {
                assert!(reason.contains("stderr only"), "{reason}")
            }
            other => panic!("expected InvalidOptions, got {other:?}"),
        }
    }
}

#[test]
fn stdio_from_a_pipe_and_an_owned_fd_reaches_the_child() {
    warm_up();
    let leak = LeakCheck::new();
    let (mut reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
    let r = fixture_cmd(["print-then-exit", "piped", "0"])
        .stdout(std::os::fd::OwnedFd::from(writer))
        .stderr(Stdio::Null)
        .run()
        .unwrap();
    assert!(r.success(), "{r:?}");
    let mut text = [0u8; 6];
    reader.read_exact(&mut text).unwrap();
    assert_eq!(&text, b"piped\n");

    let input: std::os::fd::OwnedFd = std::fs::File::open("/proc/self/cmdline").unwrap().into();
    let out = fixture_cmd(["count-stdin"]).stdin(input).output().unwrap();
    assert!(out.result.success());
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .trim()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    drop(reader);
    leak.assert_clean();
}

#[test]
fn the_default_maximum_line_is_one_mebibyte() {
    let mut got = Vec::new();
    let mut lines = Lines::new(|l: &[u8]| {
        got.push(l.len());
        Ok(())
    });
    let mib = 1 << 20;
    let mut data = vec![b'x'; mib];
    data.push(b'\n');
    data.extend(vec![b'y'; mib + 1]);
    lines.feed(&data).unwrap();
    lines.finish().unwrap();
    drop(lines);
    assert_eq!(got, [mib, mib, 1]);
}

#[test]
fn capture_as_text_marks_what_was_dropped() {
    let mut whole = Capture::new(16);
    whole.push(b"short\n");
    assert_eq!(whole.to_string_lossy(), "short\n");
    let mut cut = Capture::new(8);
    cut.push(b"head\n");
    cut.push(b"middle part\n");
    cut.push(b"tail");
    assert_eq!(
        cut.to_string_lossy(),
        "head\n[... 13 bytes dropped ...]\ntail"
    );
    let mut cut = Capture::new(4);
    cut.push(b"abcdef");
    assert_eq!(cut.to_string_lossy(), "ab\n[... 2 bytes dropped ...]\nef");
    // Nothing kept: the mark alone, with no empty head line before it.
    let mut none = Capture::new(0);
    none.push(b"abcdef");
    assert_eq!(none.to_string_lossy(), "[... 6 bytes dropped ...]\n");
}

#[test]
fn lines_debug_shows_what_is_pending() {
    let mut lines = Lines::new(|_: &[u8]| Ok(())).max_line_length(9);
    lines.feed(b"abc").unwrap();
    let text = format!("{lines:?}");
    assert!(
        text.contains("pending: 3") && text.contains("max_len: 9"),
        "{text}"
    );
}

/// Found in review: the grace period after the exit is for pipes a
/// grandchild holds open, but a consumer slower than the grace lost what
/// was still in the pipe after the child had exited and closed it (the
/// output was cut off). A pipe whose writers have all gone is now read to
/// its end: every byte written arrives, however slowly it is consumed.
#[test]
fn a_consumer_slower_than_the_grace_period_still_gets_every_byte() {
    warm_up();
    let leak = LeakCheck::new();
    let total = 256 << 10;
    let mut cmd = fixture_cmd(["write", &total.to_string()]);
    // Room for all of it at once: the child writes, exits, and is gone
    // long before the consumer is done.
    cmd.pipe_capacity(1 << 20)
        .buffer_size(16 << 10)
        .grace_period(std::time::Duration::from_millis(50));
    let mut got = Vec::new();
    let result = with_process(
        &cmd,
        stdin::empty(),
        |chunk: &[u8]| {
            std::thread::sleep(std::time::Duration::from_millis(20));
            got.extend_from_slice(chunk);
            Ok(())
        },
        discard,
        |p| p.wait(),
    )
    .unwrap();
    assert!(result.success(), "{result:?}");
    assert!(!result.output_cut_off, "{result:?}");
    assert_eq!(got.len(), total);
    assert_eq!(got, pattern(0, total));
    leak.assert_clean();
}

/// Found in review: with stdout read to its end for a slow consumer, a
/// grandchild holding stderr open lived on (and stderr stayed open) until
/// stdout was drained, since both readers share one task and the slow
/// consumer never let the stderr reader reach its cut-off. Now the reader
/// at its end yields between chunks, and a cut-off kills the group at once.
#[test]
fn a_slow_consumer_on_one_stream_does_not_delay_the_cut_off_of_the_other() {
    use std::time::{Duration, Instant};
    warm_up();
    let leak = LeakCheck::new();
    let mut cmd = Command::new("sh");
    // The grandchild holds stderr only; stdout gets 256 KiB, then the
    // child exits.
    cmd.args([
        "-c",
        "(exec sleep 30) >/dev/null & echo $!; head -c 262144 /dev/zero; exit 0",
    ])
    .pipe_capacity(1 << 20)
    .buffer_size(16 << 10)
    .grace_period(Duration::from_millis(200));
    let started = Instant::now();
    let mut holder = None;
    let mut seen_dead_at = None;
    let mut total = 0;
    let result = with_process(
        &cmd,
        stdin::empty(),
        |chunk: &[u8]| {
            if holder.is_none() {
                let line = chunk.split(|&b| b == b'\n').next().unwrap();
                holder = Some(std::str::from_utf8(line).unwrap().parse::<i32>().unwrap());
            }
            total += chunk.len();
            std::thread::sleep(Duration::from_millis(100));
            if seen_dead_at.is_none() && !common::pid_alive(holder.unwrap()) {
                seen_dead_at = Some(started.elapsed());
            }
            Ok(())
        },
        discard,
        |p| p.wait(),
    )
    .unwrap();
    let elapsed = started.elapsed();
    assert!(result.output_cut_off, "{result:?}");
    let holder = holder.unwrap();
    assert_eq!(
        total,
        holder.to_string().len() + 1 + (256 << 10),
        "every byte of stdout"
    );
    assert!(
        elapsed > Duration::from_millis(1400),
        "stdout drained too fast to tell: {elapsed:?}"
    );
    let dead_at = seen_dead_at.expect("the holder of stderr was killed before stdout was drained");
    assert!(
        dead_at < Duration::from_millis(1000),
        "killed only at {dead_at:?} of {elapsed:?}"
    );
    leak.assert_clean();
}
