//! Calls that do not match across ranks end in an error on every rank, never a hang; a
//! rank that panics or leaves early makes the others fail fast.

use chorus_comm::{Error, Sum, TransportPreference, World};

use crate::support::run_ranks;

/// Runs `body` on `n` ranks followed by a barrier; returns each rank's error text.
fn errors(n: usize, body: impl Fn(&World) -> Result<(), Error> + Send + Sync + Clone + 'static) -> Vec<String> {
    run_ranks(n, TransportPreference::Auto, move |w| {
        let outcome = body(&w).and_then(|()| w.barrier());
        match outcome {
            Ok(()) => panic!("rank {} saw no error", w.rank()),
            Err(e) => e.to_string(),
        }
    })
}

fn assert_mismatch_named(errs: &[String], needle: &str) {
    assert!(errs.iter().all(|e| e.contains("collective mismatch")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains(needle)), "no error mentions {needle:?}: {errs:#?}");
}

#[test]
fn different_collectives_fail_every_rank() {
    let errs = errors(3, |w| if w.rank() == 2 { w.allgatherv(&1u8).map(drop) } else { w.bcast(0, Some(1u8)).map(drop) });
    assert_mismatch_named(&errs, "allgatherv");
}

#[test]
fn different_roots_fail_every_rank() {
    let errs = errors(3, |w| w.bcast(if w.rank() == 2 { 1 } else { 0 }, Some(5u32)).map(drop));
    assert!(errs.iter().all(|e| e.contains("collective mismatch") || e.contains("finalized")), "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("root 1")), "{errs:#?}");
}

#[test]
fn different_element_types_fail_every_rank() {
    let errs = errors(2, |w| if w.rank() == 0 { w.allreduce(1.0f64, Sum).map(drop) } else { w.allreduce(1i64, Sum).map(drop) });
    assert_mismatch_named(&errs, "different element type");
}

#[test]
fn different_slice_lengths_in_a_reduction_fail_every_rank() {
    // Small and segmented (large) reductions, and one rank on each path.
    for (short, long) in [(3, 4), (10_000, 10_001), (3, 100_000)] {
        for n in [2, 3, 4] {
            let errs = errors(n, move |w| {
                let mut v = vec![1.0f64; if w.rank() == 1 { long } else { short }];
                w.allreduce_slice(&mut v, Sum)
            });
            assert!(
                errs.iter().all(|e| e.contains("collective mismatch") || e.contains("finalized")),
                "{short} vs {long} on {n} ranks: {errs:#?}"
            );
            assert!(errs.iter().any(|e| e.contains("different lengths") || e.contains("element")), "{errs:#?}");
        }
    }
}

#[test]
fn wrong_number_of_scatter_parts_fails_every_rank() {
    let errs = errors(3, |w| w.scatterv(0, (w.rank() == 0).then_some(&[1u8, 2][..])).map(drop));
    assert!(errs.iter().all(|e| e.contains("scatterv: rank 0 passed 2 parts for a job of 3 ranks")), "{errs:#?}");
}

#[test]
fn root_out_of_range_fails_every_rank() {
    let errs = errors(2, |w| w.bcast(if w.rank() == 0 { 7 } else { 0 }, Some(1u8)).map(drop));
    assert!(errs.iter().all(|e| e.contains("root 7 is out of range")), "{errs:#?}");
}

#[test]
fn a_panicking_rank_makes_the_others_fail_with_peer_lost() {
    let out = run_ranks(3, TransportPreference::Auto, |w| {
        if w.rank() == 1 {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let _w = w;
                panic!("boom");
            }));
            assert!(outcome.is_err());
            return "panicked".to_string();
        }
        w.allreduce(1u32, Sum).unwrap_err().to_string()
    });
    assert_eq!(out[1], "panicked");
    for r in [0, 2] {
        assert!(out[r].contains("lost connection to rank 1") || out[r].contains("job aborted"), "{out:#?}");
    }
}

#[test]
fn a_rank_that_leaves_early_makes_waiting_ranks_fail_at_once() {
    let out = run_ranks(2, TransportPreference::Auto, |w| {
        if w.rank() == 1 {
            drop(w);
            return String::new();
        }
        w.recv::<u8>(1, 3).unwrap_err().to_string()
    });
    assert!(out[0].contains("rank 1 has already finalized"), "{out:#?}");
}

#[test]
fn explicit_finalize_catches_a_mismatch_the_calls_themselves_could_not_see() {
    // bcast's root and gatherv's non-roots only send, so neither call can notice.
    let out = run_ranks(2, TransportPreference::Auto, |w| {
        if w.rank() == 0 {
            w.bcast(0, Some(1u8)).unwrap();
        } else {
            assert_eq!(w.gatherv(0, &2u8).unwrap(), None);
        }
        w.finalize().unwrap_err().to_string()
    });
    assert!(out.iter().all(|e| e.contains("collective mismatch")), "{out:#?}");
    assert!(out.iter().any(|e| e.contains("bcast") && e.contains("gatherv")), "{out:#?}");
}

#[test]
fn point_to_point_type_mismatch_is_an_error_not_garbage() {
    let out = run_ranks(2, TransportPreference::Auto, |w| {
        if w.rank() == 0 {
            w.send(1, 1, &3.5f64).unwrap();
            w.send_slice(1, 2, &[1.5f64, 2.5]).unwrap();
            let _ = w.barrier();
            String::new()
        } else {
            let serde = w.recv::<String>(0, 1).unwrap_err().to_string();
            assert!(serde.contains("as alloc::string::String") && serde.contains("was another type sent?"), "{serde}");
            String::new()
        }
    });
    assert_eq!(out.len(), 2);
    let out = run_ranks(2, TransportPreference::Auto, |w| {
        if w.rank() == 0 {
            w.send_slice(1, 2, &[1.5f64, 2.5]).unwrap();
            let _ = w.barrier();
            String::new()
        } else {
            w.recv_slice::<i64>(0, 2).unwrap_err().to_string()
        }
    });
    assert!(out[1].contains("sent as another type"), "{out:#?}");
}

#[test]
fn borrowed_and_owned_forms_of_a_type_interoperate_point_to_point() {
    let out = run_ranks(2, TransportPreference::Auto, |w| {
        if w.rank() == 0 {
            w.send(1, 1, &"borrowed").unwrap();
            w.send(1, 2, &&[1u16, 2, 3][..]).unwrap();
            Vec::new()
        } else {
            let s: String = w.recv(0, 1).unwrap();
            let v: Vec<u16> = w.recv(0, 2).unwrap();
            vec![s, format!("{v:?}")]
        }
    });
    assert_eq!(out[1], vec!["borrowed".to_string(), "[1, 2, 3]".to_string()]);
}

#[test]
fn abort_fails_every_rank_with_the_reason() {
    let out = run_ranks(3, TransportPreference::Auto, |w| {
        if w.rank() == 2 {
            return w.abort("input file is corrupt").to_string();
        }
        w.barrier().unwrap_err().to_string()
    });
    for e in &out {
        assert_eq!(e, "job aborted by rank 2: input file is corrupt");
    }
}

#[test]
fn a_rank_can_send_to_itself() {
    let out = run_ranks(2, TransportPreference::Auto, |w| {
        let r = w.rank();
        w.send(r, 4, &format!("note to self {r}")).unwrap();
        w.send_slice(r, 5, &vec![r as u32; 5_000_000]).unwrap();
        let big = w.recv_slice::<u32>(r, 5).unwrap();
        assert_eq!(big.len(), 5_000_000);
        w.recv::<String>(r, 4).unwrap()
    });
    assert_eq!(out, vec!["note to self 0", "note to self 1"]);
}

#[test]
fn swapped_roots_where_every_rank_waits_first_are_detected_not_hung() {
    // Each rank thinks the other is the root: both wait for a parent and neither sends.
    let errs = errors(2, |w| w.bcast(1 - w.rank(), None::<u8>).map(drop));
    assert_mismatch_named(&errs, "rank 1 called bcast(root 0) as collective #0");
    assert_mismatch_named(&errs, "rank 0 called bcast(root 1) as collective #0");
}

#[test]
fn calling_from_inside_an_async_runtime_is_refused_with_an_explanation() {
    let world = chorus_comm::World::single();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let panic = rt.block_on(async { std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.barrier())).unwrap_err() });
    let msg = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap();
    assert!(msg.contains("spawn_blocking"), "{msg}");
    assert!(world.barrier().is_ok(), "the world still works from a plain thread");
}

#[test]
fn a_world_dropped_inside_an_async_runtime_still_says_goodbye() {
    let out = run_ranks(2, TransportPreference::Auto, |w| {
        if w.rank() == 1 {
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            rt.block_on(async move { drop(w) });
            return String::new();
        }
        w.recv::<u8>(1, 1).unwrap_err().to_string()
    });
    assert!(out[0].contains("rank 1 has already finalized"), "{out:#?}");
}

/// Regression: a send to a rank that had aborted and left reported "lost connection"
/// instead of the abort, when the abort was still unread in our socket.
#[test]
fn regression_a_failed_send_reports_the_peers_abort_not_a_lost_connection() {
    let out = run_ranks(2, TransportPreference::Auto, |w| {
        if w.rank() == 1 {
            // Abort, then exit at once (a panic skips the goodbye, as a process exit does).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                let w = w;
                w.abort("input is corrupt");
                panic!("exiting");
            }));
            return String::new();
        }
        // Busy outside chorus calls while rank 1 aborts and leaves.
        std::thread::sleep(std::time::Duration::from_millis(300));
        w.send_slice(1, 1, &vec![0u8; 8 << 20]).unwrap_err().to_string()
    });
    assert_eq!(out[0], "job aborted by rank 1: input is corrupt");
}

/// A barrier through the group segment finishes without entering the runtime when the
/// other ranks are already there; a rank there with another call must still be caught,
/// whether it arrived first or last.
#[test]
fn a_barrier_against_a_small_allreduce_fails_every_rank_whichever_arrives_first() {
    for late in [0, 1] {
        let errs = errors(2, move |w| {
            if w.rank() == late {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if w.rank() == 0 {
                w.barrier()
            } else {
                w.allreduce(1.0f64, Sum).map(drop)
            }
        });
        assert_mismatch_named(&errs, "allreduce");
    }
}
