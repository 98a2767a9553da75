//! Every collective against a sequential reference.

use chorus_comm::{Max, Min, Prod, Sum, TransportPreference};

use crate::support::run_ranks;

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
