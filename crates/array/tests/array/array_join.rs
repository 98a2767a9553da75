//! Joining arrays, and arrays made of blocks that the user's own tasks computed.

use chorus_array as da;
use chorus_tasks::registry::{decode_arg, encode_result, Encoded, FunctionEntry, RemoteFunction};
use ndarray::Axis;
use proptest::prelude::*;

use crate::support::{cases, close, cluster, shape_and_chunks, values};

/// A user's task that "loads a file": block `seed` of 30 × 20 values, as a `Vec<f64>`.
#[derive(Clone, Copy)]
struct LoadBlock;

impl RemoteFunction for LoadBlock {
    type Args = (u64,);
    type Output = Vec<f64>;
    const NAME: &'static str = "array_tests::load_block";
}

inventory::submit! {
    FunctionEntry { name: LoadBlock::NAME, call: load_block }
}

fn load_block(args: &[&[u8]]) -> Encoded {
    let seed: u64 = decode_arg(args[0], 0)?;
    encode_result(values(&[30, 20], seed).into_raw_vec_and_offset().0)
}

#[test]
fn blocks_made_by_the_users_tasks_become_one_array_like_the_seeds_concatenate() {
    let c = cluster(2);
    let client = c.client();
    let futures = client.map(LoadBlock, 0..5u64);
    let x = da::from_futures(&client, &futures, &[30, 20], &[5, 1]).unwrap();
    assert_eq!(x.shape(), &[150, 20]);
    let parts: Vec<_> = (0..5).map(|s| values(&[30, 20], s)).collect();
    let want = ndarray::concatenate(Axis(0), &parts.iter().map(|p| p.view()).collect::<Vec<_>>()).unwrap();
    assert_eq!(x.compute().unwrap(), want);
    assert_eq!(x.slice(ndarray::s![..10, ..10]).unwrap().compute().unwrap(), want.slice(ndarray::s![..10, ..10]).into_dyn().to_owned());
    assert!((x.sum().unwrap().compute_scalar().unwrap() - want.sum()).abs() < 1e-9);
    // A result of the wrong length fails the tasks that read it, naming the block.
    let wrong = da::from_futures(&client, &futures, &[30, 21], &[5, 1]).unwrap();
    let e = wrong.compute().unwrap_err().to_string();
    assert!(e.contains("input block") && e.contains("needs"), "{e}");
    assert!(matches!(da::from_futures(&client, &futures, &[30, 20], &[2, 2]).unwrap_err(), da::Error::Invalid(_)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn concatenate_and_stack_match_ndarray((shape, chunks) in shape_and_chunks(), seed in 0u64..1000, extra in 1usize..6, axis in 0usize..4) {
        let c = cluster(2);
        let client = c.client();
        let axis = axis % shape.len();
        let a = values(&shape, seed);
        let mut other = shape.clone();
        other[axis] = extra;
        let mut other_chunks = chunks.clone();
        other_chunks[axis] = chunks[axis].min(extra);
        let b = values(&other, seed + 1);
        let (x, y) = (da::from_ndarray(&client, &a, &chunks).unwrap(), da::from_ndarray(&client, &b, &other_chunks).unwrap());
        let joined = da::concatenate(&[&x, &(&y * 2.0), &x], axis).unwrap();
        let want = ndarray::concatenate(Axis(axis), &[a.view(), (&b * 2.0).view(), a.view()]).unwrap();
        prop_assert!(close(&joined.compute().unwrap(), &want));
        prop_assert!(close(&(&joined + 1.0).sum().unwrap().compute().unwrap(), &ndarray::arr0(want.sum() + want.len() as f64).into_dyn()));
        let stacked = da::stack(&[&x, &(&x + 1.0)], axis).unwrap();
        let want = ndarray::stack(Axis(axis), &[a.view(), (&a + 1.0).view()]).unwrap();
        prop_assert!(close(&stacked.compute().unwrap(), &want));
        // Joining with the transpose works exactly when the other axes line up.
        let t = x.t();
        let fits = (0..shape.len()).all(|k| k == axis || (t.shape()[k] == shape[k] && t.chunks().axes()[k] == x.chunks().axes()[k]));
        prop_assert_eq!(da::concatenate(&[&x, &t], axis).is_ok(), fits);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn matrix_products_match_ndarray(m in 1usize..9, k in 1usize..9, n in 1usize..9, cm in 1usize..5, ck in 1usize..5, cn in 1usize..5, seed in 0u64..1000, every in 2usize..4) {
        let c = cluster(2);
        let client = c.client();
        let (a, b) = (values(&[m, k], seed), values(&[k, n], seed + 1));
        let x = da::from_ndarray(&client, &a, &[cm, ck]).unwrap().split_every(every).unwrap();
        let y = da::from_ndarray(&client, &b, &[ck, cn]).unwrap();
        let (a2, b2) = (a.clone().into_dimensionality::<ndarray::Ix2>().unwrap(), b.clone().into_dimensionality::<ndarray::Ix2>().unwrap());
        prop_assert!(close(&x.dot(&y).unwrap().compute().unwrap(), &a2.dot(&b2).into_dyn()));
        // Of expressions, and used in one.
        let xtx = (&x * 2.0).t().dot(&x).unwrap();
        let want = (&a2 * 2.0).t().dot(&a2);
        prop_assert!(close(&xtx.compute().unwrap(), &want.clone().into_dyn()));
        prop_assert!((xtx.sum().unwrap().compute_scalar().unwrap() - want.sum()).abs() < 1e-6 * (1.0 + want.sum().abs()));
    }
}

#[test]
fn products_check_their_operands_and_integers_multiply_exactly() {
    let c = cluster(1);
    let client = c.client();
    let x = da::ones::<i64>(&client, &[6, 4], &[3, 2]).unwrap();
    let y = da::arange(&client, 0i64, 8, 1, 4).unwrap();
    assert!(matches!(x.dot(&y).unwrap_err(), da::Error::Invalid(m) if m.contains("2-D")));
    let z = da::ones::<i64>(&client, &[4, 5], &[3, 5]).unwrap();
    assert!(matches!(x.dot(&z).unwrap_err(), da::Error::Chunks(m) if m.contains("cut")));
    let w = da::ones::<i64>(&client, &[5, 5], &[2, 5]).unwrap();
    assert!(matches!(x.dot(&w).unwrap_err(), da::Error::Invalid(m) if m.contains("columns")));
    let ok = da::ones::<i64>(&client, &[4, 5], &[2, 5]).unwrap();
    assert_eq!(x.dot(&ok).unwrap().compute().unwrap(), ndarray::ArrayD::from_elem(ndarray::IxDyn(&[6, 5]), 4i64));
    // Each task sums up to `split_every` block products: 2 × 1 output blocks of 2 inner
    // products are 2 tasks; with split_every 2, 5 inner products are 3 tasks per output
    // block, then a tree of 3 (two pairs, then the last two).
    assert_eq!(x.dot(&ok).unwrap().task_count(), 2);
    let long = da::ones::<i64>(&client, &[6, 10], &[3, 2]).unwrap().split_every(2).unwrap();
    let tall = da::ones::<i64>(&client, &[10, 5], &[2, 5]).unwrap();
    let p = long.dot(&tall).unwrap();
    assert_eq!(p.task_count(), 2 * (3 + 3));
    assert_eq!(p.compute().unwrap(), ndarray::ArrayD::from_elem(ndarray::IxDyn(&[6, 5]), 10i64));
}

/// A user's block function: `b * b + 1`, elementwise.
#[derive(Clone, Copy)]
pub(crate) struct SquarePlusOne;

impl RemoteFunction for SquarePlusOne {
    type Args = (ndarray::ArrayD<f64>,);
    type Output = ndarray::ArrayD<f64>;
    const NAME: &'static str = "array_tests::square_plus_one";
}

inventory::submit! {
    FunctionEntry { name: SquarePlusOne::NAME, call: square_plus_one }
}

fn square_plus_one(args: &[&[u8]]) -> Encoded {
    let b: ndarray::ArrayD<f64> = decode_arg(args[0], 0)?;
    encode_result(b.mapv(|v| v * v + 1.0))
}

/// A user's block function that changes the shape, which map_blocks does not allow.
#[derive(Clone, Copy)]
struct FirstRow;

impl RemoteFunction for FirstRow {
    type Args = (ndarray::ArrayD<f64>,);
    type Output = ndarray::ArrayD<f64>;
    const NAME: &'static str = "array_tests::first_row";
}

inventory::submit! {
    FunctionEntry { name: FirstRow::NAME, call: first_row }
}

fn first_row(args: &[&[u8]]) -> Encoded {
    let b: ndarray::ArrayD<f64> = decode_arg(args[0], 0)?;
    encode_result(b.slice_axis(Axis(0), ndarray::Slice::from(0..1)).to_owned())
}

#[test]
fn map_blocks_applies_a_registered_function_to_every_block() {
    let c = cluster(2);
    let client = c.client();
    let a = values(&[9, 7], 2);
    let x = da::from_ndarray(&client, &a, &[4, 3]).unwrap();
    let y = (&x * 0.5).map_blocks::<_, f64>(SquarePlusOne).unwrap();
    let want = (&a * 0.5).mapv(|v| v * v + 1.0);
    assert_eq!(y.compute().unwrap(), want);
    // Its result is an array like any other, fused into what follows.
    let (got, expected) = ((&y - 1.0).sum().unwrap().compute_scalar().unwrap(), (&want - 1.0).sum());
    assert!((got - expected).abs() < 1e-9, "{got} against {expected}");
    assert_eq!(y.t().slice(ndarray::s![..2, ..]).unwrap().compute().unwrap(), want.t().slice(ndarray::s![..2, ..]).into_dyn().to_owned());
    let e = x.map_blocks::<_, f64>(FirstRow).unwrap().compute().unwrap_err().to_string();
    assert!(e.contains("keep the shape") && e.contains("[4, 3]"), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn rechunked_arrays_hold_the_same_values_and_line_up_with_others(
        ((shape, chunks), other) in shape_and_chunks().prop_flat_map(|(s, c)| {
            let other: Vec<_> = s.iter().map(|&n| 1usize..=n).collect();
            (Just((s, c)), other)
        }),
        seed in 0u64..1000,
    ) {
        let c = cluster(2);
        let client = c.client();
        let a = values(&shape, seed);
        let x = da::from_ndarray(&client, &a, &chunks).unwrap();
        let r = (&x + 1.0).rechunk(&other).unwrap();
        prop_assert_eq!(r.chunks(), &da::Chunks::regular(&shape, &other).unwrap());
        prop_assert!(close(&r.compute().unwrap(), &(&a + 1.0)));
        // Made to line up with an array cut the other way, then combined with it.
        let y = da::from_ndarray(&client, &a, &other).unwrap();
        prop_assert!(close(&(&x.rechunk(&other).unwrap() * &y).compute().unwrap(), &(&a * &a)));
        // Generated arrays rechunk too, and a slice of a rechunked array reads its parts.
        let u = da::random::uniform(&client, &shape, &chunks, seed).unwrap();
        let whole = u.compute().unwrap();
        prop_assert_eq!(u.rechunk(&other).unwrap().compute().unwrap(), whole.clone());
        let t = u.rechunk(&other).unwrap().t();
        prop_assert_eq!(t.compute().unwrap(), whole.t().to_owned());
    }
}

/// A shape of `n` elements: a divisor of what is left for each choice but the last,
/// the rest last, and an axis of length 1 put in where `unit` says.
pub(crate) fn shape_of(n: usize, choices: &[usize], unit: Option<usize>) -> Vec<usize> {
    let mut rest = n;
    let mut shape = Vec::new();
    for c in &choices[..choices.len() - 1] {
        let divisors: Vec<usize> = (1..=rest).filter(|d| rest % d == 0).collect();
        let d = divisors[c % divisors.len()];
        shape.push(d);
        rest /= d;
    }
    shape.push(rest);
    if let Some(at) = unit {
        shape.insert(at % (shape.len() + 1), 1);
    }
    shape
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn reshaped_arrays_match_ndarray_in_c_order(
        (shape, chunks) in shape_and_chunks(),
        choices in prop::collection::vec(0usize..100, 1..=4),
        unit in prop::option::of(0usize..5),
        seed in 0u64..1000,
    ) {
        let c = cluster(2);
        let client = c.client();
        let a = values(&shape, seed);
        let new = shape_of(a.len(), &choices, unit);
        let want = a.to_shape(ndarray::IxDyn(&new)).unwrap().to_owned();
        let x = da::from_ndarray(&client, &a, &chunks).unwrap();
        let r = x.reshape(&new).unwrap();
        prop_assert_eq!(r.shape(), new.as_slice());
        prop_assert_eq!(r.compute().unwrap(), want.clone());
        // Of an expression, fused with what follows, and back again.
        let e = (&(&x * 2.0).reshape(&new).unwrap() - 1.0).reshape(&shape).unwrap();
        prop_assert_eq!(e.compute().unwrap(), &a * 2.0 - 1.0);
        prop_assert!((r.sum().unwrap().compute_scalar().unwrap() - a.sum()).abs() < 1e-9);
        // Generated arrays, sliced after.
        let u = da::random::uniform(&client, &shape, &chunks, seed).unwrap();
        let whole = u.compute().unwrap().to_shape(ndarray::IxDyn(&new)).unwrap().to_owned();
        let ru = u.reshape(&new).unwrap();
        prop_assert_eq!(ru.compute().unwrap(), whole.clone());
        let first = ru.slice(ndarray::s![..1, ..]).ok();
        if let Some(f) = first.filter(|_| new.len() == 2) {
            prop_assert_eq!(f.compute().unwrap(), whole.slice(ndarray::s![..1, ..]).into_dyn().to_owned());
        }
    }
}

#[test]
fn reshape_keeps_blocks_whole_and_refuses_other_element_counts() {
    let c = cluster(1);
    let client = c.client();
    let x = da::arange(&client, 0i64, 24, 1, 6).unwrap();
    let m = x.reshape(&[4, 6]).unwrap();
    assert_eq!(m.chunks().axes(), &[vec![1, 1, 1, 1], vec![6]]);
    // Blocks of 6 cannot be whole rows of 4: they become blocks of 8, two rows each.
    let n = x.reshape(&[6, 4]).unwrap();
    assert_eq!(n.chunks().axes(), &[vec![2, 2, 2], vec![4]]);
    assert_eq!(n.compute().unwrap(), ndarray::Array::from_iter(0i64..24).into_shape_with_order((6, 4)).unwrap().into_dyn());
    // Merging keeps the leading blocks.
    let y = da::from_ndarray(&client, &values(&[10, 6], 1), &[4, 6]).unwrap();
    assert_eq!(y.reshape(&[60]).unwrap().chunks().axes(), &[vec![24, 24, 12]]);
    let e = x.reshape(&[5, 5]).unwrap_err();
    assert!(matches!(e, da::Error::Invalid(_)) && e.to_string().contains("[24]") && e.to_string().contains("[5, 5]"), "{e}");
    // Empty arrays reshape too.
    let z = da::zeros::<f64>(&client, &[3, 0], &[2, 2]).unwrap();
    assert_eq!(z.reshape(&[0, 5]).unwrap().compute().unwrap().shape(), &[0, 5]);
}

#[test]
fn regression_a_block_that_several_rechunked_blocks_overlap_is_computed_once() {
    let c = cluster(1);
    let client = c.client();
    // Blocks of 4 cut into blocks of 6: the old blocks 1 and 4 each feed two new ones.
    let x = da::arange(&client, 0i64, 24, 1, 4).unwrap();
    let y = (&x + 1).rechunk(&[6]).unwrap();
    assert_eq!(y.task_count(), 6 + 4);
    let kept = y.persist().unwrap();
    assert_eq!(kept.compute().unwrap(), ndarray::Array::from_iter(1i64..25).into_dyn());
    // The persisted blocks keep their lineage: four new blocks and six old ones, not
    // eight (each old block was submitted once per new block it overlaps).
    assert_eq!(c.status().unwrap().tasks, 10);
}
