//! Arrays of serde elements (`SerdeArray`): every operation that moves elements against
//! ndarray on the same elements, a user's own element type, and functions that turn
//! blocks into numbers.

use chorus_array::{self as da, SerdeArray};
use chorus_tasks::registry::{decode_arg, encode_result, Encoded, FunctionEntry, RemoteFunction};
use ndarray::{ArrayD, Axis, IxDyn};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

use crate::array_join::shape_of;
use crate::support::{cases, cluster, shape_and_chunks};

/// A user's element type of variable size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Cell {
    Empty,
    Text(String),
    Number(f64),
}

chorus_array::serde_element!(Cell);

fn words(shape: &[usize], seed: usize) -> ArrayD<String> {
    let mut n = 0usize;
    ArrayD::from_shape_fn(IxDyn(shape), |_| {
        n += 1;
        "w".repeat((n * 7 + seed) % 5) + &n.to_string()
    })
}

/// A user's function: the length of each string.
#[derive(Clone, Copy)]
struct Lengths;

impl RemoteFunction for Lengths {
    type Args = (ArrayD<String>,);
    type Output = ArrayD<i64>;
    const NAME: &'static str = "array_tests::lengths";
}

inventory::submit! {
    FunctionEntry { name: Lengths::NAME, call: lengths }
}

fn lengths(args: &[&[u8]]) -> Encoded {
    let b: ArrayD<String> = decode_arg(args[0], 0)?;
    encode_result(b.mapv(|s| s.len() as i64))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn serde_arrays_move_like_ndarray(
        (shape, chunks) in shape_and_chunks(),
        seed in 0usize..1000,
        cut in 0usize..7,
        choices in prop::collection::vec(0usize..100, 1..=4),
    ) {
        let c = cluster(2);
        let client = c.client();
        let a = words(&shape, seed);
        let x = SerdeArray::from_ndarray(&client, &a, &chunks).unwrap();
        prop_assert_eq!(x.compute().unwrap(), a.clone());
        prop_assert_eq!(x.t().unwrap().compute().unwrap(), a.t().to_owned());
        let perm: Vec<usize> = (0..shape.len()).rev().cycle().skip(cut % shape.len()).take(shape.len()).collect();
        let mut sorted = perm.clone();
        sorted.sort_unstable();
        if sorted == (0..shape.len()).collect::<Vec<_>>() {
            prop_assert_eq!(x.transpose(&perm).unwrap().compute().unwrap(), a.clone().permuted_axes(IxDyn(&perm)));
        }
        // A stepped range on the first axis, and an index on the last.
        let from = cut % shape[0];
        let stepped = [ndarray::SliceInfoElem::Slice { start: from as isize, end: None, step: 2 }];
        let want = a.slice_axis(Axis(0), ndarray::Slice::new(from as isize, None, 2)).to_owned();
        prop_assert_eq!(x.slice(stepped).unwrap().compute().unwrap(), want);
        let last = shape.len() - 1;
        let mut info = vec![ndarray::SliceInfoElem::Slice { start: 0, end: None, step: 1 }; last];
        info.push(ndarray::SliceInfoElem::Index(-1));
        prop_assert_eq!(x.slice(&info).unwrap().compute().unwrap(), a.index_axis(Axis(last), shape[last] - 1).to_owned());
        let other: Vec<usize> = shape.iter().map(|&n| n.div_ceil(2)).collect();
        prop_assert_eq!(x.rechunk(&other).unwrap().compute().unwrap(), a.clone());
        let new = shape_of(a.len(), &choices, None);
        prop_assert_eq!(x.reshape(&new).unwrap().compute().unwrap(), a.to_shape(IxDyn(&new)).unwrap().to_owned());
        let joined = SerdeArray::concatenate(&[&x, &x.t().unwrap().t().unwrap()], 0).unwrap();
        prop_assert_eq!(joined.compute().unwrap(), ndarray::concatenate(Axis(0), &[a.view(), a.view()]).unwrap());
        let total: usize = a.iter().map(String::len).sum();
        prop_assert_eq!(x.map_blocks::<_, i64>(Lengths).unwrap().sum().unwrap().compute_scalar().unwrap(), total as i64);
    }
}

#[test]
fn a_users_own_serde_type_is_an_element_and_bad_input_is_refused() {
    let c = cluster(2);
    let client = c.client();
    let cells = ArrayD::from_shape_fn(IxDyn(&[5, 4]), |i| match (i[0] + i[1]) % 3 {
        0 => Cell::Empty,
        1 => Cell::Text(format!("r{}c{}", i[0], i[1])),
        _ => Cell::Number(i[0] as f64 / 2.0),
    });
    let x = SerdeArray::from_ndarray(&client, &cells, &[2, 3]).unwrap();
    assert!(x.to_string().contains("Cell") && x.to_string().contains("[5, 4]"), "{x}");
    let y = x.t().unwrap().rechunk(&[4, 4]).unwrap().slice(ndarray::s![1.., ..;2]).unwrap();
    assert_eq!(y.compute().unwrap(), cells.t().slice(ndarray::s![1.., ..;2]).into_dyn().to_owned());
    assert_eq!(x.reshape(&[20]).unwrap().compute().unwrap(), cells.to_shape(IxDyn(&[20])).unwrap().to_owned());
    // Empty results.
    assert_eq!(x.slice(ndarray::s![3..3, ..]).unwrap().compute().unwrap().shape(), &[0, 4]);
    let none = SerdeArray::from_ndarray(&client, &ArrayD::<Cell>::from_shape_vec(IxDyn(&[0, 4]), vec![]).unwrap(), &[2, 3]).unwrap();
    assert_eq!(SerdeArray::concatenate(&[&none, &x], 0).unwrap().compute().unwrap(), cells);
    // Bad input, refused before any task.
    assert!(matches!(x.transpose(&[0, 0]).unwrap_err(), da::Error::Axis(_)));
    assert!(matches!(x.slice(ndarray::s![.., .., ..]).unwrap_err(), da::Error::Axis(_)));
    assert!(matches!(x.slice(ndarray::s![7, ..]).unwrap_err(), da::Error::Invalid(_)));
    assert!(matches!(x.rechunk(&[0, 1]).unwrap_err(), da::Error::Chunks(_)));
    let e = x.reshape(&[3, 7]).unwrap_err().to_string();
    assert!(e.contains("[5, 4]") && e.contains("[3, 7]"), "{e}");
    let wide = SerdeArray::from_ndarray(&client, &cells, &[2, 2]).unwrap();
    assert!(matches!(SerdeArray::concatenate(&[&x, &wide], 0).unwrap_err(), da::Error::Chunks(_)));
}
