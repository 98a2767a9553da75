//! Arrays of plain-data elements (`PodArray`): every operation that moves elements,
//! against ndarray on the same elements, and user functions that turn blocks into
//! numbers or into other plain data.

use bytemuck::{Pod, Zeroable};
use chorus_array::{self as da, PodArray, PodBlock};
use chorus_tasks::registry::{decode_arg, encode_result, Encoded, FunctionEntry, RemoteFunction};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

use crate::support::{cases, cluster, shape_and_chunks};

#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[repr(C)]
struct Rgb {
    r: u8,
    g: u8,
    b: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
#[repr(C)]
struct Particle {
    mass: f32,
    id: u32,
}

fn particles(shape: &[usize], seed: u32) -> ArrayD<Particle> {
    let mut n = seed;
    ArrayD::from_shape_fn(IxDyn(shape), |_| {
        n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        Particle { mass: (n % 1000) as f32 / 8.0, id: n }
    })
}

/// A user's function on blocks of particles: their masses.
#[derive(Clone, Copy)]
struct Masses;

impl RemoteFunction for Masses {
    type Args = (PodBlock<Particle>,);
    type Output = ArrayD<f64>;
    const NAME: &'static str = "array_tests::masses";
}

inventory::submit! {
    FunctionEntry { name: Masses::NAME, call: masses }
}

fn masses(args: &[&[u8]]) -> Encoded {
    let b: PodBlock<Particle> = decode_arg(args[0], 0)?;
    encode_result(b.0.mapv(|p| f64::from(p.mass)))
}

/// A user's function from plain data to plain data: colours inverted.
#[derive(Clone, Copy)]
struct Invert;

impl RemoteFunction for Invert {
    type Args = (PodBlock<Rgb>,);
    type Output = PodBlock<Rgb>;
    const NAME: &'static str = "array_tests::invert";
}

inventory::submit! {
    FunctionEntry { name: Invert::NAME, call: invert }
}

fn invert(args: &[&[u8]]) -> Encoded {
    let b: PodBlock<Rgb> = decode_arg(args[0], 0)?;
    encode_result(PodBlock(b.0.mapv(|p| Rgb { r: 255 - p.r, g: 255 - p.g, b: 255 - p.b })))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn plain_data_arrays_move_like_ndarray((shape, chunks) in shape_and_chunks(), seed in 0u32..1000, cut in 0usize..7) {
        let c = cluster(2);
        let client = c.client();
        let a = particles(&shape, seed);
        let x = PodArray::from_ndarray(&client, &a, &chunks).unwrap();
        prop_assert_eq!((x.shape(), x.chunks()), (&shape[..], da::Chunks::regular(&shape, &chunks).unwrap()));
        prop_assert_eq!(x.compute().unwrap(), a.clone());
        prop_assert_eq!(x.t().compute().unwrap(), a.t().to_owned());
        // The first axis from `cut`, with a step of 2.
        let from = cut % shape[0];
        let info = [ndarray::SliceInfoElem::Slice { start: from as isize, end: None, step: 2 }];
        let want = a.slice_axis(ndarray::Axis(0), ndarray::Slice::new(from as isize, None, 2)).to_owned();
        prop_assert_eq!(x.slice(info).unwrap().compute().unwrap(), want);
        let flat = x.reshape(&[a.len()]).unwrap();
        prop_assert_eq!(flat.compute().unwrap(), ArrayD::from_shape_vec(IxDyn(&[a.len()]), a.iter().copied().collect()).unwrap());
        let other: Vec<usize> = shape.iter().map(|&n| n.div_ceil(2)).collect();
        prop_assert_eq!(x.rechunk(&other).unwrap().compute().unwrap(), a.clone());
        let joined = PodArray::concatenate(&[&x, &x.persist().unwrap()], 0).unwrap();
        prop_assert_eq!(joined.compute().unwrap(), ndarray::concatenate(ndarray::Axis(0), &[a.view(), a.view()]).unwrap());
        let total: f64 = a.iter().map(|p| f64::from(p.mass)).sum();
        let got = x.map_blocks::<_, f64>(Masses).unwrap().sum().unwrap().compute_scalar().unwrap();
        prop_assert!((got - total).abs() < 1e-6 * (1.0 + total), "{} against {}", got, total);
    }
}

#[test]
fn plain_data_blocks_become_other_plain_data_and_bad_input_is_refused() {
    let c = cluster(2);
    let client = c.client();
    let image = ArrayD::from_shape_fn(IxDyn(&[30, 20]), |i| Rgb { r: i[0] as u8, g: i[1] as u8, b: 7 });
    let x = PodArray::from_ndarray(&client, &image, &[8, 8]).unwrap();
    assert!(x.to_string().contains("Rgb> (3 bytes each)") && x.to_string().contains("[30, 20]"), "{x}");
    let inverted = x.map_pod_blocks::<_, Rgb>(Invert).unwrap();
    assert_eq!(inverted.compute().unwrap(), image.mapv(|p| Rgb { r: 255 - p.r, g: 255 - p.g, b: 248 }));
    // Stacked, swapped, and the bytes as a numeric array.
    let s = PodArray::stack(&[&x, &inverted], 0).unwrap().swap_axes(0, 2).unwrap();
    assert_eq!(s.shape(), &[20, 30, 2]);
    assert_eq!(s.compute().unwrap()[[3, 4, 1]], Rgb { r: 251, g: 252, b: 248 });
    let bytes = x.as_bytes();
    assert_eq!(bytes.shape(), &[30, 20, 3]);
    assert_eq!(bytes.sum().unwrap().compute_scalar().unwrap(), image.iter().map(|p| i64::from(p.r) + i64::from(p.g) + 7).sum::<i64>());
    let back = PodArray::<Rgb>::from_bytes(bytes.clone()).unwrap();
    assert_eq!(back.compute().unwrap(), image);
    // Bad input.
    assert!(matches!(PodArray::from_ndarray(&client, &image, &[8]).unwrap_err(), da::Error::Chunks(_)));
    assert!(matches!(x.slice(ndarray::s![.., .., 0]).unwrap_err(), da::Error::Axis(_)));
    assert!(matches!(x.transpose(&[0]).unwrap_err(), da::Error::Axis(_)));
    let e = PodArray::<Particle>::from_bytes(bytes.clone()).unwrap_err().to_string();
    assert!(e.contains("Particle") && e.contains("8 bytes"), "{e}");
    let e = x.reshape(&[7, 7]).unwrap_err().to_string();
    assert!(e.contains("element counts differ") && e.contains("[30, 20]") && e.contains("[7, 7]"), "{e}");
    let e = x.rechunk(&[0, 4]).unwrap_err().to_string();
    assert!(e.contains("[30, 20]"), "{e}");
}
