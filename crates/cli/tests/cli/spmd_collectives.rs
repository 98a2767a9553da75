//! Every collective on 1, 2, 3, 4 and 8 real processes, against a sequential reference.

use std::time::Duration;

use crate::support::{chorus_run, finish};

fn check(n: usize, seeds: &[u64]) {
    for &seed in seeds {
        let out = finish(&mut chorus_run(n, &format!("collectives:{seed}"), &[]), Duration::from_secs(120));
        assert!(out.success(), "{n} ranks, seed {seed}:\n{}", out.all());
        for r in 0..n {
            assert!(
                out.stdout.contains(&format!("[{r}] rank {r}: all collectives agree with the reference (seed {seed})")),
                "rank {r} of {n} did not finish (seed {seed}):\n{}",
                out.all()
            );
        }
    }
}

#[test]
fn collectives_match_reference_on_1_process() {
    check(1, &[1, 2]);
}

#[test]
fn collectives_match_reference_on_2_processes() {
    check(2, &[3, 4, 5]);
}

#[test]
fn collectives_match_reference_on_3_processes() {
    check(3, &[6, 7, 8]);
}

#[test]
fn collectives_match_reference_on_4_processes() {
    check(4, &[9, 10]);
}

#[test]
fn collectives_match_reference_on_8_processes() {
    check(8, &[11]);
}

#[test]
fn collectives_over_tcp_between_same_host_ranks() {
    let out = finish(&mut chorus_run(3, "collectives:12", &[("CHORUS_TRANSPORT", "tcp")]), Duration::from_secs(120));
    assert!(out.success(), "{}", out.all());
}
