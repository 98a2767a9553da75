//! Every collective against a sequential reference.

use chorus_comm::{Max, Min, Prod, Sum, TransportPreference};

use crate::support::{run_ranks, EVERY_VIA};

#[test]
fn smoke_all_collectives_four_ranks() {
    let out = run_ranks(4, TransportPreference::Auto, |w| {
        let (r, p) = (w.rank(), w.size());
        w.barrier().unwrap();
        let b: String = w.bcast(2, (r == 2).then(|| "hello".to_string())).unwrap();
        assert_eq!(b, "hello");
        let g = w.gatherv(1, &(r as u32 * 10)).unwrap();
        if r == 1 { assert_eq!(g, Some(vec![0, 10, 20, 30])); } else { assert!(g.is_none()); }
        let parts: Vec<Vec<u8>> = (0..p).map(|q| vec![q as u8; q]).collect();
        let s: Vec<u8> = w.scatterv(3, (r == 3).then_some(&parts[..])).unwrap();
        assert_eq!(s, vec![r as u8; r]);
        let ag = w.allgatherv_slice(&vec![r as f64; r + 1]).unwrap();
        for (q, part) in ag.iter().enumerate() { assert_eq!(part, &vec![q as f64; q + 1]); }
        assert_eq!(w.allreduce(r as i64 + 1, Sum).unwrap(), 10);
        assert_eq!(w.allreduce(r as i64 + 1, Prod).unwrap(), 24);
        assert_eq!(w.allreduce(r as i64, Min).unwrap(), 0);
        assert_eq!(w.reduce(2, r as i64, Max).unwrap(), (r == 2).then_some(3));
        let mut v = vec![r as f64, 1.0];
        w.allreduce_slice(&mut v, Sum).unwrap();
        assert_eq!(v, vec![6.0, 4.0]);
        let a2a: Vec<(usize, usize)> = w.alltoallv(&(0..p).map(|q| (r, q)).collect::<Vec<_>>()).unwrap();
        assert_eq!(a2a, (0..p).map(|q| (q, r)).collect::<Vec<_>>());
        let mut big = if r == 0 { (0..3_000_000u32).collect() } else { Vec::new() };
        w.bcast_slice(0, &mut big).unwrap();
        assert_eq!(big.len(), 3_000_000);
        assert_eq!(big[2_999_999], 2_999_999);
        w.send((r + 1) % p, 7, &format!("from {r}")).unwrap();
        let m: String = w.recv((r + p - 1) % p, 7).unwrap();
        assert_eq!(m, format!("from {}", (r + p - 1) % p));
        w.finalize().unwrap();
        r
    });
    assert_eq!(out, vec![0, 1, 2, 3]);
}

mod properties {
    use chorus_comm::{Max, Sum};
    use proptest::prelude::*;

    use crate::support::{run_ranks, Via, EVERY_VIA};

    /// Per-rank payloads for 1 to 8 ranks, including empty and uneven ones, and some past
    /// 64 KiB (copied from the sender's memory on shared memory).
    fn payloads() -> impl Strategy<Value = Vec<Vec<i64>>> {
        let part = prop_oneof![4 => proptest::collection::vec(any::<i64>(), 0..400), 1 => proptest::collection::vec(any::<i64>(), 8000..12000)];
        prop_oneof![Just(1usize), Just(2), Just(3), Just(4), Just(5), Just(8)]
            .prop_flat_map(move |n| proptest::collection::vec(part.clone(), n))
    }

    /// Every way between ranks of one host.
    fn transports() -> impl Strategy<Value = Via> {
        proptest::sample::select(EVERY_VIA.to_vec())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn collectives_match_a_sequential_reference(parts in payloads(), root_pick in any::<usize>(), transport in transports()) {
            let n = parts.len();
            let root = root_pick % n;
            let results = run_ranks(n, transport, move |w| {
                let r = w.rank();
                let mine = &parts[r];
                let mut b = if r == root { mine.clone() } else { vec![1, 2, 3] };
                w.bcast_slice(root, &mut b).unwrap();
                assert_eq!(b, parts[root]);
                assert_eq!(w.gatherv_slice(root, mine).unwrap(), (r == root).then(|| parts.clone()));
                let mut into = vec![9; 5];
                let counts = w.gatherv_slice_into(root, mine, &mut into).unwrap();
                if r == root {
                    assert_eq!(into, parts.concat());
                    assert_eq!(counts.unwrap(), parts.iter().map(Vec::len).collect::<Vec<_>>());
                }
                assert_eq!(w.allgatherv_slice(mine).unwrap(), parts);
                let counts = w.allgatherv_slice_into(mine, &mut into).unwrap();
                assert_eq!(into, parts.concat());
                assert_eq!(counts, parts.iter().map(Vec::len).collect::<Vec<_>>());
                assert_eq!(w.allgatherv(mine).unwrap(), parts);
                assert_eq!(w.scatterv_slice(root, (r == root).then_some(&parts[..])).unwrap(), parts[r]);
                let sums: Vec<i64> = parts.iter().map(|p| p.iter().fold(0i64, |a, &x| a.wrapping_add(x))).collect();
                let wrapping = |a: i64, b: i64| a.wrapping_add(b);
                assert_eq!(w.allreduce(sums[r], wrapping).unwrap(), sums.iter().fold(0i64, |a, &x| a.wrapping_add(x)));
                assert_eq!(w.reduce(root, sums[r], Max).unwrap(), (r == root).then(|| *sums.iter().max().unwrap()));
                let mut firsts = vec![parts[r].first().copied().unwrap_or(0) % 1000; 3];
                w.allreduce_slice(&mut firsts, Sum).unwrap();
                let expect: i64 = parts.iter().map(|p| p.first().copied().unwrap_or(0) % 1000).sum();
                assert_eq!(firsts, vec![expect; 3]);
                let sent: Vec<Vec<i64>> = (0..w.size()).map(|q| parts[r].iter().map(|x| x ^ q as i64).collect()).collect();
                let got = w.alltoallv_slice(&sent).unwrap();
                let expect: Vec<Vec<i64>> = (0..w.size()).map(|q| parts[q].iter().map(|x| x ^ r as i64).collect()).collect();
                assert_eq!(got, expect);
                w.finalize().unwrap();
                true
            });
            prop_assert!(results.iter().all(|&ok| ok));
        }
    }
}

#[test]
fn large_messages_stream_in_chunks_through_every_collective() {
    // 9 MiB per rank: three 4 MiB frames each, with elements that straddle frame edges.
    #[derive(Clone, Copy, PartialEq, Debug, bytemuck::Pod, bytemuck::Zeroable)]
    #[repr(C)]
    struct Triple([u8; 3]);
    for via in EVERY_VIA {
    let out = run_ranks(3, via, |w| {
        let r = w.rank() as u8;
        let mine: Vec<Triple> = (0..3 << 20).map(|i| Triple([r, (i % 251) as u8, (i % 13) as u8])).collect();
        let all = w.allgatherv_slice(&mine).unwrap();
        for (q, part) in all.iter().enumerate() {
            assert_eq!(part.len(), 3 << 20);
            assert_eq!(part[(3 << 20) - 1], Triple([q as u8, (((3 << 20) - 1) % 251) as u8, (((3 << 20) - 1) % 13) as u8]));
        }
        let mut b = if r == 1 { mine.clone() } else { Vec::new() };
        w.bcast_slice(1, &mut b).unwrap();
        assert_eq!(b.len(), 3 << 20);
        assert!(b.iter().all(|t| t.0[0] == 1));
        let mut into = Vec::new();
        assert_eq!(w.allgatherv_slice_into(&mine, &mut into).unwrap(), vec![3 << 20; 3]);
        let n = 3usize << 20;
        assert_eq!(into.len(), 3 * n);
        for (at, t) in into.iter().enumerate().step_by(4099) {
            let (q, i) = (at / n, at % n);
            assert_eq!(*t, Triple([q as u8, (i % 251) as u8, (i % 13) as u8]));
        }
        // Lengths that split off the page grid, into the root's memory (the large parts
        // are copied by the root and their senders at once).
        let len = |q: usize| n - 7 * q - 1;
        let mut gathered = Vec::new();
        let counts = w.gatherv_slice_into(2, &mine[..len(r as usize)], &mut gathered).unwrap();
        if r == 2 {
            assert_eq!(counts, Some((0..3).map(len).collect::<Vec<_>>()));
            let mut at = 0;
            for q in 0..3 {
                assert_eq!(gathered[at], Triple([q as u8, 0, 0]));
                let last = len(q) - 1;
                assert_eq!(gathered[at + last], Triple([q as u8, (last % 251) as u8, (last % 13) as u8]));
                assert!(gathered[at..at + len(q)].iter().enumerate().step_by(997).all(|(i, t)| *t == Triple([q as u8, (i % 251) as u8, (i % 13) as u8])));
                at += len(q);
            }
            assert_eq!(at, gathered.len());
        }
        w.finalize().unwrap();
    });
    assert_eq!(out.len(), 3);
    }
}

/// 2×2 matrices under wrapping multiplication: associative, not commutative.
fn mat_mul(a: [u64; 4], b: [u64; 4]) -> [u64; 4] {
    let m = |x: u64, y: u64| x.wrapping_mul(y);
    [
        m(a[0], b[0]).wrapping_add(m(a[1], b[2])),
        m(a[0], b[1]).wrapping_add(m(a[1], b[3])),
        m(a[2], b[0]).wrapping_add(m(a[3], b[2])),
        m(a[2], b[1]).wrapping_add(m(a[3], b[3])),
    ]
}

fn matrix(rank: usize, i: usize) -> [u64; 4] {
    let x = (rank as u64 + 3) * 0x9E37_79B9 + i as u64;
    [x, x ^ 0x55, x.rotate_left(7), x.wrapping_mul(3) | 1]
}

#[test]
fn large_allreduce_keeps_rank_order_and_agrees_with_the_small_path() {
    // 8200 matrices = 262 KB, past the segmented threshold; 7 (odd) splits unevenly.
    for n in [1, 2, 3, 4, 5, 6, 7, 8] {
        for len in [7usize, 8200] {
            let via = EVERY_VIA[(n + len) % EVERY_VIA.len()];
            let out = run_ranks(n, via, move |w| {
                let r = w.rank();
                let mut buf: Vec<[u64; 4]> = (0..len).map(|i| matrix(r, i)).collect();
                w.allreduce_slice(&mut buf, mat_mul).unwrap();
                let expect: Vec<[u64; 4]> = (0..len)
                    .map(|i| (1..w.size()).fold(matrix(0, i), |acc, q| mat_mul(acc, matrix(q, i))))
                    .collect();
                assert_eq!(buf, expect, "{n} ranks, {len} elements, rank {r}");
                let mut sums: Vec<i64> = (0..len as i64).map(|i| i * (r as i64 + 1)).collect();
                w.allreduce_slice(&mut sums, Sum).unwrap();
                let total: i64 = (1..=w.size() as i64).sum();
                assert!(sums.iter().enumerate().all(|(i, &s)| s == i as i64 * total));
                w.finalize().unwrap();
            });
            assert_eq!(out.len(), n);
        }
    }
}

/// Two threads of rank 0 wait on rank 1 for different tags; each message must wake the
/// thread it is for. (A bug fixed: one wake-up per message reached the thread that had
/// waited longest, and the one the message was for slept until its one-second probe.)
#[test]
fn concurrent_receives_from_one_peer_are_each_woken_by_their_message() {
    let rounds = 5u64;
    let slowest = run_ranks(2, TransportPreference::Auto, move |world| {
        let mut slowest = std::time::Duration::ZERO;
        if world.rank() == 0 {
            std::thread::scope(|s| {
                for tag in [1u64, 2] {
                    let world = &world;
                    s.spawn(move || {
                        for round in 0..rounds {
                            let got: u64 = world.recv(1, tag).unwrap();
                            assert_eq!(got, round * 10 + tag);
                            world.send(1, 100 + tag, &round).unwrap();
                        }
                    });
                    // Tag 1's thread waits first, so it is the first in line for a wake-up.
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            });
        } else {
            for round in 0..rounds {
                for tag in [2u64, 1] {
                    // Both threads of rank 0 are asleep when the message comes.
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    let sent = std::time::Instant::now();
                    world.send(0, tag, &(round * 10 + tag)).unwrap();
                    let back: u64 = world.recv(0, 100 + tag).unwrap();
                    assert_eq!(back, round);
                    slowest = slowest.max(sent.elapsed());
                }
            }
        }
        slowest
    });
    // A round trip takes well under a millisecond; a lost wake-up costs a second.
    assert!(slowest[1] < std::time::Duration::from_millis(500), "slowest round trip {:?}", slowest[1]);
}

#[test]
fn single_copy_off_keeps_large_messages_in_the_rings_and_the_links_say_so() {
    use chorus_comm::settings::SingleCopy;
    use chorus_comm::PeerLink;

    use crate::support::Via;
    for (single_copy, expect) in [(SingleCopy::Auto, true), (SingleCopy::Off, false)] {
        let links = run_ranks(2, Via(TransportPreference::Auto, single_copy), |w| {
            let links = w.links().to_vec();
            // A message of many frames, into a vector that already holds other data.
            let mut v: Vec<u64> = if w.rank() == 0 { (0..3_000_000).collect() } else { vec![7; 10] };
            w.bcast_slice(0, &mut v).unwrap();
            assert!(v.iter().enumerate().all(|(i, &x)| x == i as u64));
            w.finalize().unwrap();
            links
        });
        for l in links {
            assert_eq!(l.iter().filter(|k| **k == PeerLink::SharedMemory { single_copy: expect }).count(), 1, "{single_copy:?}: {l:?}");
        }
    }
}

/// Messages of several 4 MiB frames, their lengths off the frame grid, through the rings
/// without single copies: whichever frames are in the inbox, half read or still in the
/// ring when a call claims the ring, every byte lands at its place.
#[test]
fn multi_frame_messages_through_the_rings_land_in_place_whatever_has_arrived_when_claimed() {
    use chorus_comm::settings::SingleCopy;

    use crate::support::Via;
    for n in [2usize, 3, 4] {
        let out = run_ranks(n, Via(TransportPreference::Auto, SingleCopy::Off), move |w| {
            let r = w.rank();
            for (round, elems) in [(4usize << 20) / 8 + 3, (13 << 20) / 8 - 5, (9 << 20) / 8 + 1].into_iter().enumerate() {
                let value = |q: usize, i: usize| (q as u64) << 40 | (round as u64) << 32 | i as u64;
                let root = round % n;
                let mut b: Vec<u64> = if r == root { (0..elems).map(|i| value(root, i)).collect() } else { vec![1; round] };
                w.bcast_slice(root, &mut b).unwrap();
                assert!(b.len() == elems && b.iter().enumerate().all(|(i, &x)| x == value(root, i)), "bcast, {n} ranks, round {round}");
                // Parts of different lengths, rank q's has elems - q elements.
                let mine: Vec<u64> = (0..elems - r).map(|i| value(r, i)).collect();
                let mut all = vec![5; 3];
                let counts = w.allgatherv_slice_into(&mine, &mut all).unwrap();
                assert_eq!(counts, (0..n).map(|q| elems - q).collect::<Vec<_>>());
                let mut at = 0;
                for (q, c) in counts.iter().enumerate() {
                    assert!(all[at..at + c].iter().enumerate().all(|(i, &x)| x == value(q, i)), "allgather, {n} ranks, round {round}, part {q}");
                    at += c;
                }
                let mut gathered = Vec::new();
                if let Some(counts) = w.gatherv_slice_into(root, &mine, &mut gathered).unwrap() {
                    assert_eq!(gathered, all, "gather, {n} ranks, round {round}");
                    assert_eq!(counts.len(), n);
                }
            }
            w.finalize().unwrap();
        });
        assert_eq!(out.len(), n);
    }
}

/// Large single copies are divided between receiver and sender by the rates measured in
/// the previous ones, so the division moves from call to call (and an allgather's parts
/// are written by their senders): whatever it is, every byte lands once, in its place.
#[test]
fn shared_copies_divided_by_measured_rates_land_every_byte_in_place_round_after_round() {
    for n in [2usize, 3] {
        let out = run_ranks(n, TransportPreference::Auto, move |w| {
            let r = w.rank();
            for round in 0..8usize {
                let value = |q: usize, i: usize| (q as u64) << 48 | (round as u64) << 40 | i as u64;
                // 1 MiB and up, lengths off the page grid, the receivers' buffers fresh on
                // odd rounds and reused (already in memory) on even ones.
                let elems = ((1usize << 20) << (round % 4)) / 8 + 13 * round + 1;
                let root = round % n;
                let mut b: Vec<u64> = if r == root { (0..elems).map(|i| value(root, i)).collect() } else { Vec::new() };
                if r != root && round % 2 == 0 {
                    b = vec![u64::MAX; elems];
                }
                w.bcast_slice(root, &mut b).unwrap();
                assert!(b.len() == elems && b.iter().enumerate().all(|(i, &x)| x == value(root, i)), "bcast, {n} ranks, round {round}");
                let mine: Vec<u64> = (0..elems + r).map(|i| value(r, i)).collect();
                let mut gathered = vec![0; 3];
                if let Some(counts) = w.gatherv_slice_into(root, &mine, &mut gathered).unwrap() {
                    assert_eq!(counts, (0..n).map(|q| elems + q).collect::<Vec<_>>());
                    let expected: Vec<u64> = (0..n).flat_map(|q| (0..elems + q).map(move |i| value(q, i))).collect();
                    assert!(gathered == expected, "gather, {n} ranks, round {round}");
                }
                let mut all = Vec::new();
                w.allgatherv_slice_into(&mine, &mut all).unwrap();
                let expected: Vec<u64> = (0..n).flat_map(|q| (0..elems + q).map(move |i| value(q, i))).collect();
                assert!(all == expected, "allgather, {n} ranks, round {round}");
            }
            w.finalize().unwrap();
        });
        assert_eq!(out.len(), n);
    }
}
