//! Times chorus's collectives on the workloads of `shared/peers/bench_mpi.py`, so the two
//! can be printed side by side. Run it as an SPMD job:
//!
//!     chorus run -n 2 target/release/bench-collectives [--iters N] [--reps R]
//!
//! Rank 0 prints `RESULT chorus_<transport>_<n>ranks_<name>=<median> <unit>` lines, the same
//! format as the peers' scripts (median of `--reps` repetitions, each timed between
//! barriers). `--only allreduce,bcast,…` runs the named workloads alone (for profiling
//! one; names as in the RESULT lines, without their sizes: allreduce, allreduce_obj,
//! barrier, bcast, gather, allgather, pingpong).

use std::time::Instant;

use chorus::{Sum, World};

fn timed(world: &World, iters: usize, mut f: impl FnMut()) -> f64 {
    world.barrier().expect("barrier");
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    world.barrier().expect("barrier");
    t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> chorus::Result<()> {
    let mut iters = 10_000;
    let mut reps = 3;
    let mut only: Option<Vec<String>> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = || args.next().and_then(|v| v.parse().ok()).expect("a number after the flag");
        match a.as_str() {
            "--iters" => iters = num(),
            "--reps" => reps = num(),
            "--only" => only = Some(args.next().expect("workload names after --only").split(',').map(str::to_string).collect()),
            other => panic!("unknown argument {other}; usage: bench-collectives [--iters N] [--reps R] [--only NAME,…]"),
        }
    }
    let runs = |name: &str| only.as_ref().is_none_or(|o| o.iter().any(|n| n == name));
    let world = chorus::init()?;
    let (rank, size) = (world.rank(), world.size());
    let transport = std::env::var("CHORUS_TRANSPORT").unwrap_or_else(|_| "auto".into());
    let report = |name: &str, vals: Vec<f64>, unit: &str| {
        if rank == 0 {
            println!("RESULT chorus_{transport}_{size}ranks_{name}={:.3} {unit}", median(vals));
        }
    };

    let mut one = [rank as f64 + 1.0];
    let mut allreduce = || {
        one[0] = rank as f64 + 1.0;
        world.allreduce_slice(&mut one, Sum).expect("allreduce");
    };
    // The first workload also warms the ranks up (fresh processes run slower at first here).
    timed(&world, 20 * 500, &mut allreduce);
    if runs("allreduce") {
        report("allreduce_f64", (0..reps).map(|_| timed(&world, iters, &mut allreduce) / iters as f64 * 1e6).collect(), "us/op");
        assert_eq!(one[0], (size * (size + 1) / 2) as f64);
    }

    if runs("allreduce_obj") {
        let mut obj = || {
            world.allreduce(rank as f64 + 1.0, Sum).expect("allreduce");
        };
        timed(&world, 500, &mut obj);
        report("allreduce_f64_obj", (0..reps).map(|_| timed(&world, iters, &mut obj) / iters as f64 * 1e6).collect(), "us/op");
    }

    if runs("barrier") {
        let mut barrier = || world.barrier().expect("barrier");
        timed(&world, 500, &mut barrier);
        report("barrier", (0..reps).map(|_| timed(&world, iters, &mut barrier) / iters as f64 * 1e6).collect(), "us/op");
    }

    let it = 10;
    if runs("bcast") {
        let nb = 100_000_000;
        let mut buf = vec![if rank == 0 { 7u8 } else { 0 }; nb];
        let mut bcast = || world.bcast_slice(0, &mut buf).expect("bcast");
        timed(&world, 2, &mut bcast);
        report("bcast_100MB", (0..reps).map(|_| (nb * it) as f64 / timed(&world, it, &mut bcast) / 1e9).collect(), "GB/s");
        assert_eq!(buf[nb - 1], 7);
    }

    let ng = 50_000_000;
    let send = vec![rank as u8; ng];
    if runs("gather") {
        // Receive buffers are kept across calls, as with MPI's.
        let mut recv = Vec::new();
        let mut gather = || {
            world.gatherv_slice_into(0, &send, &mut recv).expect("gatherv");
        };
        timed(&world, 2, &mut gather);
        report("gather_50MB_per_rank", (0..reps).map(|_| (ng * size * it) as f64 / timed(&world, it, &mut gather) / 1e9).collect(), "GB/s");
    }
    if runs("allgather") {
        let mut recv_all = Vec::new();
        let mut allgather = || {
            world.allgatherv_slice_into(&send, &mut recv_all).expect("allgatherv");
        };
        timed(&world, 2, &mut allgather);
        report(
            "allgather_50MB_per_rank",
            (0..reps).map(|_| (ng * size * it) as f64 / timed(&world, it, &mut allgather) / 1e9).collect(),
            "GB/s",
        );
        assert_eq!(recv_all.len(), ng * size);
        assert_eq!(recv_all[ng * size - 1] as usize, size - 1);
    }

    if size == 2 && runs("pingpong") {
        let peer = 1 - rank;
        let mut pingpong = || {
            if rank == 0 {
                world.send_slice(peer, 1, &[0.0f64]).expect("send");
                world.recv_slice::<f64>(peer, 1).expect("recv");
            } else {
                world.recv_slice::<f64>(peer, 1).expect("recv");
                world.send_slice(peer, 1, &[0.0f64]).expect("send");
            }
        };
        timed(&world, 500, &mut pingpong);
        report("pingpong_8B_rtt", (0..reps).map(|_| timed(&world, iters, &mut pingpong) / iters as f64 * 1e6).collect(), "us");
    }
    world.finalize()?;
    Ok(())
}
