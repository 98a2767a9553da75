//! What rank processes do, selected by `CHORUS_TEST_SCENARIO`.

use chorus::{Max, Min, Prod, Sum, World};

/// Runs a scenario the way `#[chorus::main]` would: an error is printed as `Error: …` and ends the
/// process with status 1.
pub fn run(name: &str) {
    // As `#[chorus::main]` does: logs go to stderr, filtered by RUST_LOG.
    chorus::__private::init_logging("driver");
    let result = std::panic::catch_unwind(|| scenario(name));
    match result {
        Ok(Ok(())) => std::process::exit(0),
        Ok(Err(e)) => {
            eprintln!("Error: {e}");
            std::process::exit(1);
        }
        Err(_) => std::process::exit(101),
    }
}

fn scenario(name: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (name, arg) = name.split_once(':').unwrap_or((name, ""));
    if name == "slow-start" {
        // The last rank starts `arg` ms late, so a start-up bar shows the others waiting.
        let rank: Option<usize> = std::env::var("CHORUS_RANK").ok().and_then(|r| r.parse().ok());
        let size: Option<usize> = std::env::var("CHORUS_SIZE").ok().and_then(|r| r.parse().ok());
        if rank.is_some() && rank == size.map(|s| s - 1) {
            std::thread::sleep(std::time::Duration::from_millis(arg.parse()?));
        }
    }
    let world = chorus::init()?;
    if name == "tpch" {
        return crate::frame_hosts::tpch_ranks(world, std::path::Path::new(arg));
    }
    let (r, p) = (world.rank(), world.size());
    match name {
        "hello" | "slow-start" => println!("rank {r} of {p}"),
        "collectives" => collectives(&world, arg.parse()?),
        "panic" => {
            world.barrier()?;
            if r == p - 1 {
                panic!("rank {r} gives up on purpose");
            }
            world.allreduce(1u64, Sum)?;
        }
        "error" => {
            world.barrier()?;
            if r == 1 {
                return Err(format!("rank {r} could not open input.csv").into());
            }
            world.allreduce(1u64, Sum)?;
        }
        "sigkill" => {
            if r == 1 {
                std::fs::write(arg, std::process::id().to_string())?;
            }
            // Everyone waits for a message that never comes until rank 1 is killed.
            let _: u64 = world.recv((r + 1) % p, 99)?;
        }
        "sigkill-bcast" => {
            // Large broadcasts (copied from rank 0's memory on shared memory) and gathers
            // until rank 1 is killed in the middle of one.
            if r == 1 {
                std::fs::write(arg, std::process::id().to_string())?;
            }
            let mut buf = vec![r as u8; 32 << 20];
            let mut all = Vec::new();
            loop {
                world.bcast_slice(0, &mut buf)?;
                world.allgatherv_slice_into(&buf[..4 << 20], &mut all)?;
            }
        }
        "sigkill-flat" | "sigkill-flat-asleep" => {
            // Barriers and small allreduces (through the host's shared segment) until rank
            // 1 is killed: in the middle of the loop, or while the others sleep in a
            // barrier it never reaches.
            if r == 1 {
                std::fs::write(arg, std::process::id().to_string())?;
                if name == "sigkill-flat-asleep" {
                    std::thread::sleep(std::time::Duration::from_secs(60));
                }
            }
            loop {
                world.barrier()?;
                world.allreduce_slice(&mut [r as f64], Sum)?;
            }
        }
        "late" => {
            if r == 1 {
                std::thread::sleep(std::time::Duration::from_millis(arg.parse().unwrap_or(1500)));
            }
            world.barrier()?;
            println!("rank {r} passed the barrier");
        }
        "mismatch" => {
            if r == 0 {
                world.bcast(0, Some(1u32))?;
            } else {
                world.gatherv(0, &2u32)?;
            }
            world.barrier()?;
        }
        "netns" | "mpi" => {
            let total = world.allreduce(r as u64 + 1, Sum)?;
            let all = world.allgatherv(&format!("rank {r}"))?;
            println!("rank {r} of {p}: sum {total}, gathered {}", all.join("|"));
        }
        other => panic!("unknown scenario {other}"),
    }
    world.finalize()?;
    Ok(())
}

/// Deterministic pseudo-random numbers from (seed, rank, stream).
fn rng(seed: u64, rank: usize, stream: u64) -> impl FnMut() -> u64 {
    let mut s = seed ^ (rank as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
    move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The payload rank `q` contributes (empty or uneven lengths included).
fn payload(seed: u64, q: usize, stream: u64) -> Vec<i64> {
    let mut g = rng(seed, q, stream);
    let len = match g() % 4 {
        0 => 0,
        1 => (g() % 5) as usize,
        2 => (g() % 2000) as usize,
        _ => (g() % 300_000) as usize,
    };
    (0..len).map(|_| (g() % 1_000_000) as i64 - 500_000).collect()
}

/// Every collective, checked on every rank against a sequential computation over all
/// ranks' inputs (which every rank can generate).
fn collectives(world: &World, seed: u64) {
    let (r, p) = (world.rank(), world.size());
    let all = |stream| (0..p).map(|q| payload(seed, q, stream)).collect::<Vec<_>>();
    let root = (seed as usize) % p;

    world.barrier().unwrap();
    let mut b = if r == root { payload(seed, root, 1) } else { vec![7; 3] };
    world.bcast_slice(root, &mut b).unwrap();
    assert_eq!(b, payload(seed, root, 1), "bcast_slice");
    let s: String = world.bcast(root, (r == root).then(|| format!("seed {seed}"))).unwrap();
    assert_eq!(s, format!("seed {seed}"));

    let g = world.gatherv_slice(root, &payload(seed, r, 2)).unwrap();
    assert_eq!(g, (r == root).then(|| all(2)), "gatherv_slice");
    let gs = world.gatherv(root, &(r, payload(seed, r, 3).len())).unwrap();
    assert_eq!(gs, (r == root).then(|| (0..p).map(|q| (q, payload(seed, q, 3).len())).collect()));

    let parts: Vec<Vec<i64>> = (0..p).map(|q| payload(seed, q, 4)).collect();
    let mine = world.scatterv_slice(root, (r == root).then_some(&parts[..])).unwrap();
    assert_eq!(mine, payload(seed, r, 4), "scatterv_slice");
    let words: Vec<String> = (0..p).map(|q| "w".repeat(q)).collect();
    assert_eq!(world.scatterv(root, (r == root).then_some(&words[..])).unwrap(), "w".repeat(r));

    assert_eq!(world.allgatherv_slice(&payload(seed, r, 5)).unwrap(), all(5), "allgatherv_slice");
    assert_eq!(world.allgatherv(&payload(seed, r, 6).len()).unwrap(), all(6).iter().map(Vec::len).collect::<Vec<_>>());

    let x = |q: usize| (payload(seed, q, 7).len() as i64) - 1000;
    assert_eq!(world.allreduce(x(r), Sum).unwrap(), (0..p).map(x).sum::<i64>());
    assert_eq!(world.allreduce(x(r), Min).unwrap(), (0..p).map(x).min().unwrap());
    assert_eq!(world.allreduce(x(r), Max).unwrap(), (0..p).map(x).max().unwrap());
    assert_eq!(world.allreduce((x(r) % 7) as i128, Prod).unwrap(), (0..p).map(|q| (x(q) % 7) as i128).product::<i128>());
    let concat = |a: String, b: String| a + &b;
    assert_eq!(world.allreduce(r.to_string(), concat).unwrap(), (0..p).map(|q| q.to_string()).collect::<String>(), "non-commutative op keeps rank order");
    assert_eq!(world.reduce(root, x(r), Sum).unwrap(), (r == root).then(|| (0..p).map(x).sum::<i64>()));

    // Up to 160 KB: both the small-message and the segmented allreduce paths.
    let n = 1 + (seed * 7919 % 20_000) as usize;
    let vec_of = |q: usize| -> Vec<f64> { let mut g = rng(seed, q, 8); (0..n).map(|_| (g() % 1000) as f64 * 0.25).collect() };
    let inputs: Vec<Vec<f64>> = (0..p).map(vec_of).collect();
    let expect: Vec<f64> = (0..n).map(|i| inputs.iter().map(|v| v[i]).sum()).collect();
    let mut v = vec_of(r);
    world.allreduce_slice(&mut v, Sum).unwrap();
    assert_eq!(v, expect, "allreduce_slice");
    let mut v = vec_of(r);
    world.reduce_slice(root, &mut v, Sum).unwrap();
    if r == root {
        assert_eq!(v, expect, "reduce_slice");
    }

    let sent: Vec<Vec<i64>> = (0..p).map(|q| payload(seed ^ q as u64, r, 9)).collect();
    let got = world.alltoallv_slice(&sent).unwrap();
    let expect: Vec<Vec<i64>> = (0..p).map(|q| payload(seed ^ r as u64, q, 9)).collect();
    assert_eq!(got, expect, "alltoallv_slice");
    let got: Vec<(usize, usize)> = world.alltoallv(&(0..p).map(|q| (r, q)).collect::<Vec<_>>()).unwrap();
    assert_eq!(got, (0..p).map(|q| (q, r)).collect::<Vec<_>>());

    let to = (r + 1) % p;
    let from = (r + p - 1) % p;
    world.send_slice(to, 5, &payload(seed, r, 10)).unwrap();
    world.send(to, 6, &format!("{r}->{to}")).unwrap();
    assert_eq!(world.recv::<String>(from, 6).unwrap(), format!("{from}->{r}"), "tags match independently of order");
    assert_eq!(world.recv_slice::<i64>(from, 5).unwrap(), payload(seed, from, 10));
    println!("rank {r}: all collectives agree with the reference (seed {seed})");
}
