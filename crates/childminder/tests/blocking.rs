//! Issue 2, rows 3 and 4: `with_process` (producer, consumers, action,
//! teardown) and the `Process` handle, against real children.

mod common;
#[path = "common/support.rs"]
mod support;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use childminder::{
    EscalationCause, ExitStatus, Signal, Termination, discard, stdin, with_process,
    with_process_result,
};
use common::{LeakCheck, our_children, pid_alive};
use support::{
    HANDSHAKE, PatternCheck, expect_ready, fixture_cmd, line_consumer, marked, next_line,
    one_chunk_then_hold, pattern, pattern_producer, wait_until, warm_up,
};

// ---------------------------------------------------------------------------
// Row 3: with_process
// ---------------------------------------------------------------------------

#[test]
fn producer_chunks_reach_the_child_in_order() {
    warm_up();
    let leak = LeakCheck::new();
    let chunks: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("chunk-{i:04};").repeat(i % 7 + 1).into_bytes())
        .collect();
    let expected = chunks.concat();
    let mut feed = chunks.into_iter();
    let mut out = Vec::new();
    let result = with_process(
        &fixture_cmd(["cat"]),
        move || Ok(feed.next()),
        |c: &[u8]| {
            out.extend_from_slice(c);
            Ok(())
        },
        discard,
        |p| p.wait(),
    )
    .unwrap();
    assert!(result.success(), "{result:?}");
    assert_eq!(out, expected);
    leak.assert_clean();
}

#[test]
fn producer_chunks_reach_the_child_in_order_without_flush_stdin() {
    warm_up();
    let leak = LeakCheck::new();
    let mut out = PatternCheck::new();
    let result = with_process(
        fixture_cmd(["cat"]).flush_stdin(false),
        pattern_producer(3_000_000, 10_007),
        |c: &[u8]| {
            out.feed(c);
            Ok(())
        },
        discard,
        |p| p.wait(),
    )
    .unwrap();
    assert!(result.success(), "{result:?}");
    assert_eq!((out.total, out.first_mismatch), (3_000_000, None));
    leak.assert_clean();
}

/// Runs `write 100000 STREAM` with `buffer_size(7)`; returns the chunk
/// sizes and bytes each consumer got, stdout first.
fn chunks_of_write(stream: &str) -> [(Vec<usize>, Vec<u8>); 2] {
    let mut out = (Vec::new(), Vec::new());
    let mut err = (Vec::new(), Vec::new());
    let result = with_process(
        fixture_cmd(["write", "100000", stream]).buffer_size(7),
        stdin::empty(),
        |c: &[u8]| {
            out.0.push(c.len());
            out.1.extend_from_slice(c);
            Ok(())
        },
        |c: &[u8]| {
            err.0.push(c.len());
            err.1.extend_from_slice(c);
            Ok(())
        },
        |p| p.wait(),
    )
    .unwrap();
    assert!(result.success(), "{stream}: {result:?}");
    [out, err]
}

#[test]
fn consumers_get_chunks_of_at_most_buffer_size() {
    warm_up();
    let leak = LeakCheck::new();
    for (i, stream) in ["out", "err"].into_iter().enumerate() {
        let got = chunks_of_write(stream);
        let (sizes, data) = &got[i];
        assert_eq!(*data, pattern(0, 100_000), "{stream}: bytes differ");
        assert!(
            got[1 - i].1.is_empty(),
            "{stream}: the other stream got bytes"
        );
        // The last, empty chunk is the end mark.
        let (end_mark, chunks) = sizes.split_last().expect("at least the end mark");
        assert_eq!(*end_mark, 0, "{stream}: no end mark");
        let bad: Vec<usize> = chunks
            .iter()
            .copied()
            .filter(|n| !(1..=7).contains(n))
            .collect();
        assert!(
            bad.is_empty(),
            "{stream}: chunk sizes outside 1..=7: {bad:?}"
        );
    }
    leak.assert_clean();
}

#[test]
fn consumers_get_chunks_of_at_most_the_default_buffer_size() {
    warm_up();
    let leak = LeakCheck::new();
    let mut max = 0;
    let mut check = PatternCheck::new();
    let result = with_process(
        fixture_cmd(["write", "3000000"]).pipe_capacity(1 << 20),
        stdin::empty(),
        |c: &[u8]| {
            max = max.max(c.len());
            check.feed(c);
            Ok(())
        },
        discard,
        |p| p.wait(),
    )
    .unwrap();
    assert!(result.success(), "{result:?}");
    assert_eq!((check.total, check.first_mismatch), (3_000_000, None));
    assert!(
        max <= childminder::DEFAULT_BUFFER_SIZE,
        "chunk of {max} bytes"
    );
    leak.assert_clean();
}

#[test]
fn action_returning_while_cat_runs_closes_stdin_and_cat_exits_by_itself() {
    warm_up();
    let leak = LeakCheck::new();
    // The producer gives one line, then blocks until the test ends: only the
    // teardown's closing of stdin can end `cat`.
    let (producer, hold_tx) = one_chunk_then_hold(b"hello\n");
    let (on_out, lines) = line_consumer();
    // A grace long enough that an escalation would show in the timing.
    let grace = Duration::from_secs(4);
    let mut pid = 0;
    let mut returned_at = None;
    let ((), result) = with_process_result(
        fixture_cmd(["cat"]).grace_period(grace),
        producer,
        on_out,
        discard,
        |p| {
            pid = p.pid() as i32;
            assert_eq!(next_line(&lines), "hello");
            assert!(p.try_result().is_none(), "cat exited while stdin was open");
            returned_at = Some(Instant::now());
        },
    )
    .unwrap();
    let teardown = returned_at.unwrap().elapsed();
    assert_eq!(result.exit, Some(ExitStatus::Exited(0)), "{result:?}");
    assert_eq!(result.termination, Termination::Clean);
    assert_eq!(result.escalation_cause, Some(EscalationCause::Teardown));
    assert_eq!(
        (result.term_sent_after, result.kill_sent_after),
        (None, None)
    );
    assert!(
        teardown < Duration::from_secs(3),
        "teardown took {teardown:?}: cat did not see EOF, it was escalated (grace {grace:?})"
    );
    assert!(!pid_alive(pid));
    assert!(lines.try_recv().is_err(), "unexpected output");
    // Checked while the producer is still stuck in its call: nothing of the
    // supervision may stay open on its account.
    leak.assert_clean();
    drop(hold_tx);
}

#[test]
fn action_panic_resumes_after_the_teardown_and_the_child_is_reaped() {
    warm_up();
    let leak = LeakCheck::new();
    let (on_out, lines) = line_consumer();
    let mut pid = 0;
    let started = Instant::now();
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        with_process(
            fixture_cmd(["sleep", "300"]).grace_period(Duration::from_millis(100)),
            stdin::empty(),
            on_out,
            discard,
            |p| {
                pid = p.pid() as i32;
                expect_ready(&lines);
                panic!("action boom");
            },
        )
    }));
    let payload = outcome.expect_err("the action's panic must resume");
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned());
    assert_eq!(message.as_deref(), Some("action boom"));
    // Resumed only after the teardown: the child is gone and reaped now.
    assert!(pid > 0);
    assert!(
        !pid_alive(pid),
        "child {pid} still alive after the panic resumed"
    );
    assert!(our_children().is_empty(), "unreaped: {:?}", our_children());
    // The teardown waited the grace period for a natural exit first.
    assert!(started.elapsed() >= Duration::from_millis(100));
    leak.assert_clean();
}

#[test]
fn hundred_megabytes_through_cat_are_byte_exact() {
    warm_up();
    let leak = LeakCheck::new();
    const TOTAL: u64 = 100_000_000;
    let mut check = PatternCheck::new();
    let result = with_process(
        &fixture_cmd(["cat"]),
        pattern_producer(TOTAL, 256 * 1024 + 13),
        |c: &[u8]| {
            check.feed(c);
            Ok(())
        },
        discard,
        |p| p.wait(),
    )
    .unwrap();
    assert!(result.success(), "{result:?}");
    assert_eq!(check.first_mismatch, None, "stream differs");
    assert_eq!(check.total, TOTAL);
    leak.assert_clean();
}

#[test]
fn every_byte_is_delivered_when_the_teardown_escalates() {
    warm_up();
    let leak = LeakCheck::new();
    let (on_err, err_lines) = line_consumer();
    let count = Arc::new(AtomicU64::new(0));
    let nonzero = Arc::new(AtomicU64::new(0));
    let (c2, n2) = (count.clone(), nonzero.clone());
    let started = Instant::now();
    let ((), result) = with_process_result(
        marked("sh")
            .args([
                "-c",
                "head -c 1000000 /dev/zero; echo written >&2; exec sleep 30",
            ])
            .grace_period(Duration::from_millis(50)),
        stdin::empty(),
        move |c: &[u8]| {
            c2.fetch_add(c.len() as u64, Ordering::SeqCst);
            n2.fetch_add(
                c.iter().filter(|&&b| b != 0).count() as u64,
                Ordering::SeqCst,
            );
            Ok(())
        },
        on_err,
        |_p| {
            // Return (start the teardown) as soon as the child has written
            // everything; some of it may still be in the pipe.
            assert_eq!(next_line(&err_lines), "written");
        },
    )
    .unwrap();
    assert_eq!(count.load(Ordering::SeqCst), 1_000_000);
    assert_eq!(nonzero.load(Ordering::SeqCst), 0);
    assert_eq!(result.termination, Termination::Escalated, "{result:?}");
    assert_eq!(result.escalation_cause, Some(EscalationCause::Teardown));
    assert_eq!(result.exit.unwrap().signal(), Some(Signal::TERM));
    assert!(!result.output_cut_off);
    assert!(started.elapsed() < Duration::from_secs(8));
    leak.assert_clean();
}

#[test]
fn bytes_still_in_the_pipe_when_sigkill_ends_the_writer_are_delivered() {
    warm_up();
    let leak = LeakCheck::new();
    // sh writes 1 MB into a 1 MiB pipe, then execs sleep; the consumer holds
    // its first chunk until the group has been SIGKILLed, so most of the
    // output is still in the pipe when every writer is dead.
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let count = Arc::new(AtomicU64::new(0));
    let count_in = count.clone();
    let mut first = true;
    let result = with_process(
        marked("sh")
            .args(["-c", "head -c 1000000 /dev/zero; exec sleep 30"])
            .pipe_capacity(1 << 20)
            .stderr(childminder::Stdio::Null),
        stdin::empty(),
        move |c: &[u8]| {
            if std::mem::take(&mut first) {
                let _ = gate_rx.recv();
            }
            count_in.fetch_add(c.len() as u64, Ordering::SeqCst);
            Ok(())
        },
        discard,
        |p| {
            let pid = p.pid() as i32;
            // No line can get through while the consumer is held: watch the
            // process become `sleep`, which it does once head is done.
            let written = wait_until(HANDSHAKE, || {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim_end() == "sleep")
            });
            p.kill();
            let died = wait_until(HANDSHAKE, || !pid_alive(pid));
            gate_tx.send(()).unwrap();
            assert!(written, "head did not finish writing into a 1 MiB pipe");
            assert!(died, "SIGKILL did not end the child");
            p.wait()
        },
    )
    .unwrap();
    assert_eq!(
        result.exit.unwrap().signal(),
        Some(Signal::KILL),
        "{result:?}"
    );
    assert_eq!(result.termination, Termination::Escalated);
    assert_eq!(count.load(Ordering::SeqCst), 1_000_000);
    leak.assert_clean();
}

#[test]
fn backpressure_a_slow_consumer_blocks_the_child_and_every_byte_arrives() {
    warm_up();
    let leak = LeakCheck::new();
    const TOTAL: u64 = 64 * 1024 * 1024;
    let (gate_tx, gate_rx) = mpsc::channel::<()>();
    let count = Arc::new(AtomicU64::new(0));
    let count_in = count.clone();
    let mut first = true;
    let result = with_process(
        marked("head").args(["-c", &TOTAL.to_string(), "/dev/zero"]),
        stdin::empty(),
        move |c: &[u8]| {
            if std::mem::take(&mut first) {
                let _ = gate_rx.recv();
            }
            count_in.fetch_add(c.len() as u64, Ordering::SeqCst);
            Ok(())
        },
        discard,
        |p| {
            let pid = p.pid() as i32;
            let written = support::wait_until_write_blocked(pid, Duration::from_secs(8));
            let state = support::stat_field(pid, 3);
            let running = p.try_result().is_none();
            gate_tx.send(()).unwrap();
            assert!(
                written < 4 * 1024 * 1024,
                "the child wrote {written} bytes while the consumer was stuck: something buffers"
            );
            assert_eq!(state.as_deref(), Some("S"), "the child is not blocked");
            assert!(running);
            p.wait()
        },
    )
    .unwrap();
    assert!(result.success(), "{result:?}");
    assert_eq!(count.load(Ordering::SeqCst), TOTAL);
    leak.assert_clean();
}

/// `with_process`: "Only then, with every byte of output delivered, every
/// pipe and the pidfd closed and the child reaped, does `with_process`
/// return". Checked right at the return, many times, to catch a race.
#[test]
fn with_process_returns_only_after_the_pidfd_and_pipes_are_closed() {
    warm_up();
    support::mark_fd_baseline();
    let leak = LeakCheck::new();
    let mut late = Vec::new();
    for i in 0..100 {
        let r = fixture_cmd(["exit", "0"]).run().unwrap();
        assert!(r.success());
        let open = support::supervision_fds();
        if !open.is_empty() {
            late.push((i, open));
        }
    }
    assert!(
        late.is_empty(),
        "{} of 100 runs returned with fds still open, e.g. {:?}",
        late.len(),
        late.first()
    );
    leak.assert_clean();
}

/// `Input`: "teardown closes stdin, and leaves the thread to end when the
/// call returns" — the stuck producer must not keep the supervision's fds
/// (the pidfd) open after `with_process` returned.
#[test]
fn a_stuck_producer_does_not_keep_the_pidfd_open_after_with_process_returns() {
    warm_up();
    support::mark_fd_baseline();
    let leak = LeakCheck::new();
    let (hold_tx, hold_rx) = mpsc::channel::<()>();
    let producer = move || {
        let _ = hold_rx.recv();
        Ok(None)
    };
    let result = with_process(
        fixture_cmd(["sleep", "300"]).grace_period(Duration::from_millis(50)),
        producer,
        discard,
        discard,
        |p| p.shutdown(),
    )
    .unwrap();
    assert_eq!(result.termination, Termination::Escalated);
    // Still stuck: with_process has returned, so nothing of the supervision
    // may be open any more.
    let open = support::supervision_fds();
    drop(hold_tx);
    assert!(
        open.is_empty(),
        "with_process returned while the stuck producer's side still held {open:?}"
    );
    leak.assert_clean();
}

#[test]
fn flush_stdin_asks_for_the_next_chunk_only_after_the_previous_is_written() {
    warm_up();
    let leak = LeakCheck::new();
    // The child never reads stdin, so a 1 MiB chunk cannot be written
    // completely (the pipe holds 64 KiB): the producer must not be asked
    // again while it is being written.
    let (asked_tx, asked_rx) = mpsc::channel::<u32>();
    let mut calls = 0;
    let producer = move || {
        calls += 1;
        let _ = asked_tx.send(calls);
        Ok(Some(vec![b'z'; 1 << 20]))
    };
    let (on_out, lines) = line_consumer();
    with_process(
        &fixture_cmd(["sleep", "300"]),
        producer,
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            assert_eq!(asked_rx.recv_timeout(HANDSHAKE), Ok(1));
            // An absence can only be observed over a window.
            let second = asked_rx.recv_timeout(Duration::from_millis(300));
            assert!(
                second.is_err(),
                "the producer was asked again before its chunk was written"
            );
            p.kill();
            p.wait()
        },
    )
    .unwrap();
    leak.assert_clean();
}

#[test]
fn from_reader_copies_a_file_into_stdin() {
    warm_up();
    let scratch = support::Scratch::new("from-reader");
    let path = scratch.path().join("input");
    std::fs::write(&path, pattern(0, 300_001)).unwrap();
    let leak = LeakCheck::new();
    let mut check = PatternCheck::new();
    let result = with_process(
        &fixture_cmd(["cat"]),
        stdin::from_reader(std::fs::File::open(&path).unwrap()),
        |c: &[u8]| {
            check.feed(c);
            Ok(())
        },
        discard,
        |p| p.wait(),
    )
    .unwrap();
    assert!(result.success(), "{result:?}");
    assert_eq!((check.total, check.first_mismatch), (300_001, None));
    leak.assert_clean();
}

// ---------------------------------------------------------------------------
// Row 4: the Process handle
// ---------------------------------------------------------------------------

#[test]
fn try_result_is_none_before_exit_and_some_after_and_wait_agrees() {
    warm_up();
    let leak = LeakCheck::new();
    let (producer, hold_tx) = one_chunk_then_hold(b"ping\n");
    let (on_out, lines) = line_consumer();
    with_process(&fixture_cmd(["cat"]), producer, on_out, discard, |p| {
        assert_eq!(next_line(&lines), "ping");
        assert!(p.try_result().is_none());
        assert!(p.wait_timeout(Duration::from_millis(50)).is_none());
        assert!(p.try_result().is_none());
        p.close_stdin();
        let waited = p.wait();
        let polled = p.try_result().expect("published after wait");
        let again = p.wait_timeout(Duration::ZERO).expect("published");
        for r in [&waited, &polled, &again] {
            assert_eq!(r.exit, Some(ExitStatus::Exited(0)));
            assert_eq!(r.termination, Termination::Clean);
            assert_eq!(r.pid, p.pid());
            assert_eq!(r.runtime, waited.runtime, "published exactly once");
        }
        assert!(waited.success(), "{waited:?}");
        assert_eq!(waited.escalation_cause, None);
    })
    .unwrap();
    leak.assert_clean();
    drop(hold_tx);
}

#[test]
fn pid_is_the_childs_pid() {
    warm_up();
    let leak = LeakCheck::new();
    let (on_out, lines) = line_consumer();
    let result = with_process(
        &fixture_cmd(["pgid"]),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            let line = next_line(&lines);
            let reported: u32 = line.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(reported, p.pid());
            assert!(p.pid() > 1);
            let r = p.wait();
            assert_eq!(r.pid, p.pid());
            r
        },
    )
    .unwrap();
    assert!(result.success());
    leak.assert_clean();
}

#[test]
fn signal_usr1_ends_sleep_and_is_clean_and_signal_after_exit_is_false() {
    warm_up();
    let leak = LeakCheck::new();
    let (on_out, lines) = line_consumer();
    let result = with_process(
        &fixture_cmd(["sleep", "300"]),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            assert!(p.signal(Signal::USR1).unwrap(), "signal to a live child");
            let r = p.wait();
            assert!(!p.signal(Signal::USR1).unwrap(), "signal after exit");
            assert!(!p.signal(Signal::KILL).unwrap(), "signal after exit");
            r
        },
    )
    .unwrap();
    assert_eq!(
        result.exit,
        Some(ExitStatus::Signaled {
            signal: Signal::USR1,
            core_dumped: false
        })
    );
    // A signal the supervisor did not escalate with: Clean, as documented.
    assert_eq!(result.termination, Termination::Clean);
    assert_eq!(result.escalation_cause, None);
    assert_eq!(result.term_sent_after, None);
    assert_eq!(result.kill_sent_after, None);
    assert!(!result.success());
    leak.assert_clean();
}

#[test]
fn signal_after_a_natural_exit_returns_false() {
    warm_up();
    let leak = LeakCheck::new();
    with_process(
        &fixture_cmd(["exit", "0"]),
        stdin::empty(),
        discard,
        discard,
        |p| {
            let r = p.wait();
            assert!(r.success(), "{r:?}");
            assert!(!p.signal(Signal::TERM).unwrap());
        },
    )
    .unwrap();
    leak.assert_clean();
}

/// `Process::signal_group`: "`Ok(false)` when nothing is left to signal".
#[test]
fn signal_group_after_the_child_exited_alone_returns_false() {
    warm_up();
    let leak = LeakCheck::new();
    with_process(
        &fixture_cmd(["exit", "0"]),
        stdin::empty(),
        discard,
        discard,
        |p| {
            let r = p.wait();
            assert!(r.success(), "{r:?}");
            let sent = p.signal_group(Signal::TERM);
            assert!(
                matches!(sent, Ok(false)),
                "the child has exited and had no descendants, yet signal_group returned {sent:?}"
            );
        },
    )
    .unwrap();
    leak.assert_clean();
}

#[test]
fn signal_reaches_the_child_alone_and_the_teardown_sweeps_the_group() {
    warm_up();
    let leak = LeakCheck::new();
    let (on_out, lines) = line_consumer();
    let mut grandchildren = Vec::new();
    with_process(
        fixture_cmd(["grandchildren", "2", "300", "stay"]).grace_period(Duration::from_millis(100)),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            grandchildren = expect_ready(&lines);
            assert_eq!(grandchildren.len(), 2);
            assert!(p.signal(Signal::KILL).unwrap());
            let r = p.wait();
            assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL));
            // Only the child was signalled.
            for &g in &grandchildren {
                assert!(pid_alive(g), "grandchild {g} was signalled too");
            }
        },
    )
    .unwrap();
    support::assert_all_dead(&grandchildren);
    leak.assert_clean();
}

#[test]
fn signal_group_reaches_the_grandchildren() {
    warm_up();
    let leak = LeakCheck::new();
    let (on_out, lines) = line_consumer();
    let mut grandchildren = Vec::new();
    let result = with_process(
        &fixture_cmd(["grandchildren", "2", "300", "stay"]),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            grandchildren = expect_ready(&lines);
            assert!(p.signal_group(Signal::KILL).unwrap());
            let r = p.wait();
            support::assert_all_dead(&grandchildren);
            r
        },
    )
    .unwrap();
    assert_eq!(result.exit.unwrap().signal(), Some(Signal::KILL));
    leak.assert_clean();
}

#[test]
fn close_stdin_takes_effect_while_the_producer_is_blocked() {
    warm_up();
    let leak = LeakCheck::new();
    let (hold_tx, hold_rx) = mpsc::channel::<()>();
    let (asked_tx, asked_rx) = mpsc::channel::<()>();
    let mut calls = 0;
    let producer = move || {
        calls += 1;
        if calls == 1 {
            return Ok(Some(b"first\n".to_vec()));
        }
        // Blocked in its own call until the test ends.
        let _ = asked_tx.send(());
        let _ = hold_rx.recv();
        Ok(Some(b"never written\n".to_vec()))
    };
    let (on_out, lines) = line_consumer();
    let result = with_process(&fixture_cmd(["cat"]), producer, on_out, discard, |p| {
        assert_eq!(next_line(&lines), "first");
        asked_rx
            .recv_timeout(HANDSHAKE)
            .expect("the producer was not asked for a second chunk");
        p.close_stdin();
        p.wait_timeout(HANDSHAKE)
            .expect("cat did not see EOF after close_stdin while the producer was blocked")
    })
    .unwrap();
    assert_eq!(result.exit, Some(ExitStatus::Exited(0)));
    assert_eq!(result.termination, Termination::Clean);
    assert!(
        result.worker_errors.is_empty(),
        "{:?}",
        result.worker_errors
    );
    assert!(lines.try_recv().is_err());
    leak.assert_clean();
    drop(hold_tx);
}

#[test]
fn close_stdin_without_a_producer_thread() {
    warm_up();
    let leak = LeakCheck::new();
    // stdin::bytes: no producer thread; close_stdin still closes.
    let (on_out, lines) = line_consumer();
    let result = with_process(
        &fixture_cmd(["count-stdin"]),
        stdin::bytes(vec![b'x'; 10]),
        on_out,
        discard,
        |p| {
            p.close_stdin();
            let r = p.wait_timeout(HANDSHAKE).expect("count-stdin saw no EOF");
            (r, next_line(&lines))
        },
    )
    .unwrap();
    // All or nothing of the 10 bytes may have been written before the close,
    // but never a partial chunk.
    assert!(result.1 == "10" || result.1 == "0", "got {:?}", result.1);
    assert!(result.0.success(), "{:?}", result.0);
    leak.assert_clean();
}

#[test]
fn shutdown_of_a_running_cat_closes_stdin_and_is_clean() {
    warm_up();
    let leak = LeakCheck::new();
    // cat runs with stdin open (the producer is blocked): shutdown's closing
    // of stdin is what ends it, well before the grace period.
    let (producer, hold_tx) = one_chunk_then_hold(b"x\n");
    let (on_out, lines) = line_consumer();
    let (r, took) = with_process(
        fixture_cmd(["cat"]).grace_period(Duration::from_secs(4)),
        producer,
        on_out,
        discard,
        |p| {
            assert_eq!(next_line(&lines), "x");
            let t = Instant::now();
            (p.shutdown(), t.elapsed())
        },
    )
    .unwrap();
    assert_eq!(r.termination, Termination::Clean, "{r:?}");
    assert_eq!(r.exit, Some(ExitStatus::Exited(0)));
    assert_eq!(r.term_sent_after, None);
    assert_eq!(r.escalation_cause, Some(EscalationCause::Shutdown));
    assert!(took < Duration::from_secs(3), "{took:?}");
    // Checked while the producer is still stuck in its call: nothing of the
    // supervision may stay open on its account.
    leak.assert_clean();
    drop(hold_tx);
}

#[test]
fn shutdown_closes_stdin_waits_a_grace_then_terms() {
    warm_up();
    let leak = LeakCheck::new();
    let grace = Duration::from_millis(300);
    let (on_out, lines) = line_consumer();
    let (r, took) = with_process(
        fixture_cmd(["sleep", "300"]).grace_period(grace),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            let t = Instant::now();
            (p.shutdown(), t.elapsed())
        },
    )
    .unwrap();
    assert_eq!(r.termination, Termination::Escalated, "{r:?}");
    assert_eq!(r.escalation_cause, Some(EscalationCause::Shutdown));
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::TERM));
    assert!(r.term_sent_after.is_some() && r.kill_sent_after.is_none());
    assert!(r.term_sent_after.unwrap() >= grace);
    assert!(took >= grace, "TERM came before the grace period: {took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    leak.assert_clean();
}

#[test]
fn shutdown_after_the_child_exited_just_returns_the_result() {
    warm_up();
    let leak = LeakCheck::new();
    let (r, again, took) = with_process(
        fixture_cmd(["exit", "6"]).grace_period(Duration::from_secs(4)),
        stdin::empty(),
        discard,
        discard,
        |p| {
            let r = p.wait();
            let t = Instant::now();
            (r, p.shutdown(), t.elapsed())
        },
    )
    .unwrap();
    assert_eq!(again.exit, Some(ExitStatus::Exited(6)));
    assert_eq!(again.termination, Termination::Clean);
    assert_eq!(again.runtime, r.runtime);
    assert_eq!((again.term_sent_after, again.kill_sent_after), (None, None));
    assert!(took < Duration::from_secs(3), "{took:?}");
    leak.assert_clean();
}

#[test]
fn begin_shutdown_returns_at_once_and_the_escalation_follows() {
    warm_up();
    let leak = LeakCheck::new();
    let grace = Duration::from_millis(500);
    let (on_out, lines) = line_consumer();
    let r = with_process(
        fixture_cmd(["ignore-term", "300"]).grace_period(grace),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            let t = Instant::now();
            p.begin_shutdown();
            assert!(t.elapsed() < grace, "begin_shutdown blocked");
            assert!(p.try_result().is_none());
            p.begin_shutdown(); // a second call changes nothing
            p.wait()
        },
    )
    .unwrap();
    assert_eq!(r.escalation_cause, Some(EscalationCause::Shutdown));
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL));
    assert_eq!(r.termination, Termination::Escalated);
    let (term, kill) = (r.term_sent_after.unwrap(), r.kill_sent_after.unwrap());
    assert!(term >= grace && kill >= term + grace, "{r:?}");
    leak.assert_clean();
}

#[test]
fn terminate_sends_the_given_signal_as_the_first_step() {
    warm_up();
    let leak = LeakCheck::new();
    let (on_out, lines) = line_consumer();
    let r = with_process(
        &fixture_cmd(["sleep", "300"]),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            let t = Instant::now();
            p.terminate(Signal::INT);
            assert!(t.elapsed() < Duration::from_secs(1), "terminate blocked");
            p.wait()
        },
    )
    .unwrap();
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::INT), "{r:?}");
    assert_eq!(r.escalation_cause, Some(EscalationCause::Requested));
    assert_eq!(r.termination, Termination::Escalated);
    assert!(r.term_sent_after.is_some() && r.kill_sent_after.is_none());
    leak.assert_clean();
}

/// `Process::terminate`: "Returns at once; a later call changes nothing."
/// Two calls in a row; repeated, since whether the coordinator acts between
/// them is a matter of timing.
#[test]
fn a_second_terminate_changes_nothing() {
    warm_up();
    let leak = LeakCheck::new();
    let mut changed = Vec::new();
    for round in 0..8 {
        let (on_out, lines) = line_consumer();
        let r = with_process(
            &fixture_cmd(["sleep", "300"]),
            stdin::empty(),
            on_out,
            discard,
            |p| {
                expect_ready(&lines);
                p.terminate(Signal::INT);
                p.terminate(Signal::USR1);
                p.wait()
            },
        )
        .unwrap();
        let signal = r.exit.and_then(|e| e.signal());
        if signal != Some(Signal::INT) {
            changed.push((round, signal));
        }
    }
    assert!(
        changed.is_empty(),
        "the second terminate changed the signal sent (round, signal): {changed:?}"
    );
    leak.assert_clean();
}

#[test]
fn terminate_on_a_term_ignoring_child_kills_a_grace_later() {
    warm_up();
    let leak = LeakCheck::new();
    let grace = Duration::from_millis(300);
    let (on_out, lines) = line_consumer();
    let r = with_process(
        fixture_cmd(["ignore-term", "300"]).grace_period(grace),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            p.terminate(Signal::TERM);
            p.wait()
        },
    )
    .unwrap();
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL), "{r:?}");
    let (term, kill) = (r.term_sent_after.unwrap(), r.kill_sent_after.unwrap());
    assert!(kill >= term + grace, "{r:?}");
    assert_eq!(r.escalation_cause, Some(EscalationCause::Requested));
    leak.assert_clean();
}

#[test]
fn kill_sends_sigkill_now_whatever_the_grace() {
    warm_up();
    let leak = LeakCheck::new();
    let (on_out, lines) = line_consumer();
    let (r, took) = with_process(
        fixture_cmd(["ignore-term", "300"]).grace_period(Duration::from_secs(5)),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            let t = Instant::now();
            p.kill();
            (p.wait(), t.elapsed())
        },
    )
    .unwrap();
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL), "{r:?}");
    assert_eq!(r.termination, Termination::Escalated);
    assert_eq!(r.escalation_cause, Some(EscalationCause::Requested));
    assert!(r.kill_sent_after.is_some());
    assert_eq!(r.term_sent_after, None);
    assert!(took < Duration::from_secs(3), "kill waited: {took:?}");
    leak.assert_clean();
}

#[test]
fn kill_during_a_shutdown_jumps_to_sigkill() {
    warm_up();
    let leak = LeakCheck::new();
    let (on_out, lines) = line_consumer();
    let (r, took) = with_process(
        fixture_cmd(["ignore-term", "300"]).grace_period(Duration::from_secs(5)),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            let t = Instant::now();
            p.begin_shutdown();
            p.kill();
            (p.wait(), t.elapsed())
        },
    )
    .unwrap();
    assert_eq!(r.exit.unwrap().signal(), Some(Signal::KILL), "{r:?}");
    assert_eq!(r.escalation_cause, Some(EscalationCause::Shutdown));
    assert!(took < Duration::from_secs(3), "{took:?}");
    leak.assert_clean();
}

#[test]
fn wait_timeout_gives_up_while_running_and_returns_the_result_after() {
    warm_up();
    let leak = LeakCheck::new();
    let (on_out, lines) = line_consumer();
    with_process(
        &fixture_cmd(["sleep", "300"]),
        stdin::empty(),
        on_out,
        discard,
        |p| {
            expect_ready(&lines);
            let t = Instant::now();
            assert!(p.wait_timeout(Duration::from_millis(200)).is_none());
            let waited = t.elapsed();
            assert!(waited >= Duration::from_millis(200), "{waited:?}");
            assert!(waited < Duration::from_secs(5), "{waited:?}");
            p.signal(Signal::TERM).unwrap();
            let r = p.wait_timeout(HANDSHAKE).expect("TERM ended sleep");
            assert_eq!(r.exit.unwrap().signal(), Some(Signal::TERM));
        },
    )
    .unwrap();
    leak.assert_clean();
}

#[test]
fn run_and_output_wait_for_the_end() {
    warm_up();
    let leak = LeakCheck::new();
    let r = fixture_cmd(["exit", "5"]).run().unwrap();
    assert_eq!(r.exit, Some(ExitStatus::Exited(5)));
    let out = fixture_cmd(["print-then-exit", "two words", "4"])
        .output()
        .unwrap();
    assert_eq!(out.stdout, b"two words\n");
    assert_eq!(out.stderr, b"err:two words\n");
    assert_eq!(out.result.exit, Some(ExitStatus::Exited(4)));
    assert_eq!(out.result.termination, Termination::Clean);
    leak.assert_clean();
}

/// Many threads supervising at once share the engine: every call gets its
/// own output, in order, and nothing is left behind.
#[test]
fn concurrent_blocking_supervisions_from_many_threads_share_the_engine() {
    warm_up();
    let leak = LeakCheck::new();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..32)
            .map(|i| {
                scope.spawn(move || {
                    let mut out = Vec::new();
                    let want = format!("thread {i}\n");
                    let r = with_process(
                        &fixture_cmd(["cat"]),
                        stdin::bytes(want.clone()),
                        |c: &[u8]| {
                            out.extend_from_slice(c);
                            Ok(())
                        },
                        discard,
                        |p| p.wait(),
                    )
                    .unwrap();
                    assert!(r.success(), "{r:?}");
                    assert_eq!(String::from_utf8_lossy(&out), want);
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
    });
    leak.assert_clean();
}
