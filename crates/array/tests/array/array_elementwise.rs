//! Fused elementwise expressions, transposes and broadcasting, against ndarray.

use chorus_array as da;
use ndarray::IxDyn;
use proptest::prelude::*;

use crate::support::{cases, close, cluster, shape_and_chunks, values};

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn chains_of_elementwise_operations_match_ndarray((shape, chunks) in shape_and_chunks(), seed in 0u64..1000, workers in 1usize..=3) {
        let c = cluster(workers);
        let client = c.client();
        let (a, b) = (values(&shape, seed), values(&shape, seed + 1));
        let (x, y) = (da::from_ndarray(&client, &a, &chunks).unwrap(), da::from_ndarray(&client, &b, &chunks).unwrap());
        // (x + y) * 2 - x / 3 + |y| - 1, in one round of tasks.
        let e = &(&(&(&(&x + &y) * 2.0) - &(&x / 3.0)) + &y.abs().unwrap()) - 1.0;
        let want = (&a + &b) * 2.0 - &a / 3.0 + b.mapv(f64::abs) - 1.0;
        prop_assert!(close(&e.compute().unwrap(), &want));
        prop_assert_eq!(e.task_count(), x.chunks().count());
        // Comparisons, where, casts.
        let big = x.gt(&y).unwrap();
        let picked = da::where_(&big, &x, 0.0).unwrap();
        let want_pick = ndarray::Zip::from(&a).and(&b).map_collect(|p, q| if p > q { *p } else { 0.0 });
        prop_assert!(close(&picked.compute().unwrap(), &want_pick));
        let count = big.astype::<i64>().compute().unwrap();
        prop_assert_eq!(count, ndarray::Zip::from(&a).and(&b).map_collect(|p, q| i64::from(p > q)));
        // Floats only: sqrt, exp and ln of positive values.
        let pos = &x.abs().unwrap() + 1.0;
        let f = &(&pos.sqrt().unwrap() + &pos.ln().unwrap()) * &(&pos / 10.0).exp().unwrap();
        let p = a.mapv(f64::abs) + 1.0;
        prop_assert!(close(&f.compute().unwrap(), &((p.mapv(f64::sqrt) + p.mapv(f64::ln)) * (&p / 10.0).mapv(f64::exp))));
    }

    #[test]
    fn transposes_and_swapped_axes_match_ndarray((shape, chunks) in shape_and_chunks(), seed in 0u64..1000) {
        let c = cluster(2);
        let client = c.client();
        let a = values(&shape, seed);
        let x = da::from_ndarray(&client, &a, &chunks).unwrap();
        prop_assert_eq!(x.t().compute().unwrap(), a.t().to_owned());
        let n = shape.len();
        prop_assert_eq!(x.swap_axes(0, n - 1).unwrap().compute().unwrap(), { let mut v = a.view(); v.swap_axes(0, n - 1); v.to_owned() });
        // x + x.T for square arrays: the seed's workload.
        if shape.iter().all(|&d| d == shape[0]) && chunks.iter().all(|&k| k == chunks[0]) {
            let y = &x + &x.t();
            prop_assert_eq!(y.compute().unwrap(), &a + &a.t());
        }
    }

    #[test]
    fn broadcasting_follows_numpys_rules((shape, chunks) in shape_and_chunks(), seed in 0u64..1000, axis in 0usize..4) {
        let c = cluster(2);
        let client = c.client();
        let a = values(&shape, seed);
        let x = da::from_ndarray(&client, &a, &chunks).unwrap();
        // A lower-rank operand lines up with the last axes.
        let tail = &shape[1..];
        let b = values(tail, seed + 7);
        let y = da::from_ndarray(&client, &b, &chunks[1..]).unwrap();
        prop_assert!(close(&(&x - &y).compute().unwrap(), &(&a - &b)));
        prop_assert!(close(&(&y - &x).compute().unwrap(), &(&b - &a)));
        // A unit axis stretches.
        let axis = axis % shape.len();
        let mut unit = shape.clone();
        unit[axis] = 1;
        let mut unit_chunks = chunks.clone();
        unit_chunks[axis] = 1;
        let u = values(&unit, seed + 9);
        let z = da::from_ndarray(&client, &u, &unit_chunks).unwrap();
        prop_assert!(close(&(&x * &z).compute().unwrap(), &(&a * &u)));
        // A generated scalar-like array (one element) against everything.
        let one = da::full(&client, &[1], &[1], 2.5).unwrap();
        prop_assert!(close(&(&x * &one).compute().unwrap(), &(&a * 2.5)));
    }
}

#[test]
fn integer_arrays_keep_their_type_and_wrap_like_numpy() {
    let c = cluster(2);
    let client = c.client();
    let a = ndarray::Array2::from_shape_fn((5, 3), |(i, j)| (i * 3 + j) as i64 - 7);
    let x = da::from_ndarray(&client, &a, &[2, 2]).unwrap();
    let e = &(&x * 3) - &x.abs().unwrap();
    assert_eq!(e.compute().unwrap(), (&a * 3 - a.mapv(i64::abs)).into_dyn());
    assert_eq!(x.try_div(0).unwrap().compute().unwrap(), ndarray::ArrayD::<i64>::zeros(IxDyn(&[5, 3])), "division by zero gives 0");
    let neg = (-&x).compute().unwrap();
    assert_eq!(neg, (-&a).into_dyn());
}

/// A slice: `(start, end, step)` for each axis, or an index (removing the axis).
fn slice_of(shape: &[usize]) -> impl Strategy<Value = Vec<Option<(usize, usize, usize)>>> {
    let axes: Vec<_> = shape
        .iter()
        .map(|&n| {
            prop_oneof![
                (0..=n, 0..=n, 1usize..4).prop_map(|(a, b, t)| Some((a.min(b), a.max(b), t))),
                (0..n).prop_map(|i| Some((i, usize::MAX, 0))),
            ]
        })
        .collect();
    axes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn slices_of_expressions_match_ndarray_and_touch_only_their_blocks(
        ((shape, chunks), cuts) in shape_and_chunks().prop_flat_map(|(s, c)| { let cuts = slice_of(&s); (Just((s, c)), cuts) }),
        seed in 0u64..1000,
    ) {
        let c = cluster(2);
        let client = c.client();
        let a = values(&shape, seed);
        let x = da::from_ndarray(&client, &a, &chunks).unwrap();
        let y = &(&x * 2.0) + &da::random::uniform(&client, &shape, &chunks, seed).unwrap();
        let elems: Vec<ndarray::SliceInfoElem> = cuts
            .iter()
            .map(|c| match *c {
                Some((i, usize::MAX, 0)) => ndarray::SliceInfoElem::Index(i as isize),
                Some((s, e, t)) => ndarray::SliceInfoElem::Slice { start: s as isize, end: Some(e as isize), step: t as isize },
                None => unreachable!(),
            })
            .collect();
        let whole = y.compute().unwrap();
        let info = ndarray::SliceInfo::<_, IxDyn, IxDyn>::try_from(elems.clone()).unwrap();
        let want = whole.slice(info.as_ref()).to_owned();
        let part = y.slice(&elems).unwrap();
        prop_assert_eq!(part.shape(), want.shape());
        prop_assert!(close(&part.compute().unwrap(), &want));
        prop_assert!(part.task_count() <= y.task_count());
        // Transposing a slice is a view of the same blocks.
        let t = part.t();
        prop_assert!(close(&t.compute().unwrap(), &want.t().to_owned()));
    }
}

#[test]
fn the_seeds_corner_slice_computes_one_block() {
    let c = cluster(2);
    let client = c.client();
    let x = da::random::uniform(&client, &[1000, 1000], &[250, 250], 1).unwrap();
    let y = &x + &x.t();
    let corner = y.slice(ndarray::s![..10, ..10]).unwrap();
    assert_eq!(corner.shape(), &[10, 10]);
    assert_eq!(corner.task_count(), 1);
    let whole = y.compute().unwrap();
    assert_eq!(corner.compute().unwrap(), whole.slice(ndarray::s![..10, ..10]).into_dyn().to_owned());
    let row = y.slice(ndarray::s![3, 100..900;7]).unwrap();
    assert_eq!(row.compute().unwrap(), whole.slice(ndarray::s![3, 100..900;7]).into_dyn().to_owned());
    let e = y.slice(ndarray::s![..1001, ..]).unwrap_err();
    assert!(e.to_string().contains("out of bounds") && e.to_string().contains("1000"), "{e}");
}
