//! Reductions over all axes and over given axes, as trees, against ndarray.

use chorus_array as da;
use ndarray::{ArrayD, Axis};
use proptest::prelude::*;

use crate::support::{cases, close, cluster, shape_and_chunks, values};

/// ndarray's reduction of `a` over `axes` (removed), by `f` on each lane.
fn reference(a: &ArrayD<f64>, axes: &[usize], f: impl Fn(&[f64]) -> f64) -> ArrayD<f64> {
    let mut axes = axes.to_vec();
    axes.sort_unstable();
    axes.dedup();
    let moved: Vec<usize> = (0..a.ndim()).filter(|i| !axes.contains(i)).chain(axes.iter().copied()).collect();
    let p = a.view().permuted_axes(moved).as_standard_layout().into_owned();
    let keep: Vec<usize> = p.shape()[..a.ndim() - axes.len()].to_vec();
    let lane: usize = p.shape()[a.ndim() - axes.len()..].iter().product();
    let flat = p.into_shape_with_order((keep.iter().product::<usize>(), lane)).unwrap();
    let out: Vec<f64> = flat.outer_iter().map(|l| f(l.as_slice().unwrap())).collect();
    ArrayD::from_shape_vec(keep, out).unwrap()
}

fn mean(l: &[f64]) -> f64 {
    l.iter().sum::<f64>() / l.len() as f64
}

fn var(l: &[f64]) -> f64 {
    let m = mean(l);
    l.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / l.len() as f64
}

/// The largest peak resident memory among the workers of a 2-worker cluster that ran
/// `work` on an `n`² array of random values in 500² blocks.
fn peak_worker_memory(n: usize, work: impl Fn(&da::Array<f64>) -> f64) -> u64 {
    let c = cluster(2);
    let client = c.client();
    let x = da::random::uniform(&client, &[n, n], &[500, 500], 4).unwrap();
    assert!(work(&x).is_finite());
    c.worker_pids().into_iter().map(peak_rss).max().unwrap()
}

/// A product's blocks and `map_blocks`' blocks are intermediate results: the workers
/// free each once the sum has read it, and the sums run as the blocks come (graph
/// order), so memory does not grow with the array (8,000² is 512 MB of f64, sixteen
/// times 2,000²). Both used to be held until the result was dropped, and the product's
/// blocks were all made before the first sum ran.
#[test]
fn peak_memory_of_intermediate_blocks_summed_does_not_grow_with_the_array() {
    let product = |x: &da::Array<f64>| {
        let inner = x.slice(ndarray::s![.., ..500]).unwrap();
        inner.dot(&inner.t()).unwrap().sum().unwrap().compute_scalar().unwrap()
    };
    let (small, large) = (peak_worker_memory(2000, product), peak_worker_memory(8000, product));
    assert!(large < small + (64 << 20), "x @ x.T summed: peak worker memory {small} B at 2000², {large} B at 8000²");
    let mapped = |x: &da::Array<f64>| x.map_blocks::<_, f64>(super::array_join::SquarePlusOne).unwrap().sum().unwrap().compute_scalar().unwrap();
    let (small, large) = (peak_worker_memory(2000, mapped), peak_worker_memory(8000, mapped));
    assert!(large < small + (64 << 20), "map_blocks summed: peak worker memory {small} B at 2000², {large} B at 8000²");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn reductions_over_any_axes_match_ndarray(
        (shape, chunks) in shape_and_chunks(),
        seed in 0u64..1000,
        pick in prop::collection::vec(0usize..4, 0..3),
        every in 2usize..5,
        workers in 1usize..=3,
    ) {
        let c = cluster(workers);
        let client = c.client();
        let a = values(&shape, seed);
        let x = da::from_ndarray(&client, &a, &chunks).unwrap().split_every(every).unwrap();
        let all: Vec<usize> = (0..shape.len()).collect();
        let axes: Vec<usize> = if pick.is_empty() { all.clone() } else { pick.iter().map(|p| p % shape.len()).collect() };
        let sum = x.sum_axes(&axes).unwrap();
        prop_assert!(close(&sum.compute().unwrap(), &reference(&a, &axes, |l| l.iter().sum())));
        prop_assert!(close(&x.min_axes(&axes).unwrap().compute().unwrap(), &reference(&a, &axes, |l| l.iter().copied().fold(f64::INFINITY, f64::min))));
        prop_assert!(close(&x.max_axes(&axes).unwrap().compute().unwrap(), &reference(&a, &axes, |l| l.iter().copied().fold(f64::NEG_INFINITY, f64::max))));
        prop_assert!(close(&x.mean_axes(&axes).unwrap().compute().unwrap(), &reference(&a, &axes, mean)));
        prop_assert!(close(&x.var_axes(&axes).unwrap().compute().unwrap(), &reference(&a, &axes, var)));
        prop_assert!(close(&x.std_axes(&axes).unwrap().compute().unwrap(), &reference(&a, &axes, |l| var(l).sqrt())));
        // Over everything: a scalar, also after a fused expression.
        let total = (&(&x * 2.0) + 1.0).sum().unwrap().compute_scalar().unwrap();
        prop_assert!((total - (a.sum() * 2.0 + a.len() as f64)).abs() < 1e-6);
        // A reduction's result is an array like any other.
        let centered = x.try_sub(&x.mean_axes(&[0]).unwrap()).unwrap();
        let want = &a - &a.mean_axis(Axis(0)).unwrap();
        prop_assert!(close(&centered.compute().unwrap(), &want));
    }
}

#[test]
fn sums_of_small_integers_and_bools_are_64_bit_like_numpys() {
    let c = cluster(2);
    let client = c.client();
    let x = da::full::<u8>(&client, &[300, 10], &[64, 4], 200).unwrap();
    let s: da::Array<i64> = x.sum().unwrap();
    assert_eq!(s.compute_scalar().unwrap(), 200 * 3000);
    let flags = da::arange::<i32>(&client, 0, 1000, 1, 128).unwrap().lt(250).unwrap();
    assert_eq!(flags.sum().unwrap().compute_scalar().unwrap(), 250);
    assert!(!flags.min().unwrap().compute_scalar().unwrap() && flags.max().unwrap().compute_scalar().unwrap());
}

#[test]
fn the_seed_workload_x_plus_x_transposed_summed_on_generated_blocks() {
    let c = cluster(2);
    let client = c.client();
    let x = da::random::uniform(&client, &[600, 600], &[100, 100], 3).unwrap();
    let local = x.compute().unwrap();
    let y = (&x + &x.t()).sum().unwrap();
    // 36 block tasks (each makes both of its blocks), then a tree of combines.
    assert_eq!(y.task_count(), 36 + 5 + 1);
    let want = (&local + &local.t()).sum();
    assert!((y.compute_scalar().unwrap() - want).abs() < 1e-6 * want);
}

/// The peak resident memory of process `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok()).unwrap_or(0) * 1024
}

/// The seed's workload at two sizes with the same chunks: the workers' peak memory is
/// that of a few tiles, not of the array, so it does not grow with the array (16,000² is
/// 2 GB of f64, sixteen times 4,000²).
#[test]
fn peak_memory_of_x_plus_x_transposed_summed_does_not_grow_with_the_array() {
    let peak = |n: usize| {
        let c = cluster(2);
        let client = c.client();
        let x = da::random::uniform(&client, &[n, n], &[1000, 1000], 9).unwrap();
        let total = (&x + &x.t()).sum().unwrap().compute_scalar().unwrap();
        assert!((total - (n * n) as f64).abs() < 0.01 * (n * n) as f64);
        c.worker_pids().into_iter().map(peak_rss).max().unwrap()
    };
    let (small, large) = (peak(4000), peak(16000));
    assert!(small > 0, "VmHWM is readable");
    assert!(large < small + (64 << 20), "peak worker memory {small} B at 4000², {large} B at 16000²");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn argmin_and_argmax_match_ndarray_first_occurrences_included((shape, chunks) in shape_and_chunks(), seed in 0u64..1000, axis in 0usize..4, every in 2usize..4) {
        let c = cluster(2);
        let client = c.client();
        // Few distinct values, so ties are common and the first occurrence matters.
        let a = values(&shape, seed).mapv(|v| (v / 8.0).round());
        let x = da::from_ndarray(&client, &a, &chunks).unwrap().split_every(every).unwrap();
        let flat: Vec<f64> = a.iter().copied().collect();
        let first = |best: f64| flat.iter().position(|v| *v == best).unwrap() as i64;
        let (lo, hi) = (flat.iter().copied().fold(f64::INFINITY, f64::min), flat.iter().copied().fold(f64::NEG_INFINITY, f64::max));
        prop_assert_eq!(x.argmin().unwrap().compute_scalar().unwrap(), first(lo));
        prop_assert_eq!(x.argmax().unwrap().compute_scalar().unwrap(), first(hi));
        let axis = axis % shape.len();
        let lane_arg = |max: bool| a.map_axis(Axis(axis), |l| {
            let mut at = 0;
            for (i, v) in l.iter().enumerate() {
                if (max && *v > l[at]) || (!max && *v < l[at]) {
                    at = i;
                }
            }
            at as i64
        });
        prop_assert_eq!(x.argmax_axis(axis).unwrap().compute().unwrap(), lane_arg(true));
        prop_assert_eq!(x.argmin_axis(axis).unwrap().compute().unwrap(), lane_arg(false));
    }
}

#[test]
fn argmax_finds_nan_first_like_numpy() {
    let c = cluster(1);
    let client = c.client();
    let mut a = ndarray::Array1::from_iter((0..20).map(f64::from));
    a[13] = f64::NAN;
    a[17] = f64::NAN;
    let x = da::from_ndarray(&client, &a, &[6]).unwrap();
    assert_eq!(x.argmax().unwrap().compute_scalar().unwrap(), 13);
    assert_eq!(x.argmin().unwrap().compute_scalar().unwrap(), 13);
    assert!(matches!(da::zeros::<f64>(&client, &[0], &[1]).unwrap().argmax().unwrap_err(), da::Error::Invalid(_)));
}

/// A worker killed while an array is computed: its blocks (persisted ones included) are
/// recomputed from lineage on the others, and the answer is the same.
#[test]
fn a_worker_killed_mid_computation_loses_no_block() {
    let c = cluster(3);
    let client = c.client();
    let kept = (&da::random::uniform(&client, &[240, 180], &[30, 30], 4).unwrap() * 2.0).persist().unwrap();
    let want = kept.compute().unwrap();
    let total = (&kept * 3.0).sum().unwrap();
    let futures = total.to_futures().unwrap();
    let victim = c.worker_pids()[1];
    // SAFETY: kill(2) on a child process this test started.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let got = futures[0].result_timeout(std::time::Duration::from_secs(30)).expect("the sum, after the lost blocks are recomputed");
    let da::Block::F64(got) = da::Block::decode(&got).unwrap() else { panic!("an f64 sum") };
    assert!((got.first().unwrap() - 3.0 * want.sum()).abs() < 1e-6);
    // The persisted blocks the killed worker held are needed again: recomputed.
    assert_eq!(kept.compute().unwrap(), want);
    assert_eq!(client.workers().len(), 2);
}

/// Scattered blocks have no lineage: when the worker holding some of them is killed,
/// a computation that needs them fails with an error that says so, and does not hang
/// (a task running elsewhere when its input was lost for good used to wait forever).
#[test]
fn scattered_blocks_lost_with_a_worker_fail_the_computation_with_a_reason() {
    let c = cluster(3);
    let client = c.client();
    let a = values(&[240, 180], 8);
    let x = da::from_ndarray(&client, &a, &[30, 30]).unwrap();
    let victim = c.worker_pids()[1];
    // SAFETY: kill(2) on a child process this test started.
    unsafe { libc::kill(victim as i32, libc::SIGKILL) };
    let e = (&x * 3.0).sum().unwrap().compute_scalar().unwrap_err().to_string();
    assert!(e.contains("scattered data") && e.contains("was lost"), "{e}");
}
