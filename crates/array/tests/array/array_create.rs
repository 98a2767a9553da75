//! Arrays made on the workers: their values, and random blocks that do not depend on
//! the number of workers.

use chorus_array as da;
use ndarray::{Array1, Array2, ArrayD, IxDyn};

use crate::support::cluster;

#[test]
fn creation_functions_match_ndarray() {
    let c = cluster(2);
    let client = c.client();
    assert_eq!(da::zeros::<f32>(&client, &[3, 5], &[2, 2]).unwrap().compute().unwrap(), ArrayD::<f32>::zeros(IxDyn(&[3, 5])));
    assert_eq!(da::ones::<i32>(&client, &[7], &[3]).unwrap().compute().unwrap(), ArrayD::<i32>::ones(IxDyn(&[7])));
    assert_eq!(da::full(&client, &[2, 2, 2], &[1, 2, 1], 9u8).unwrap().compute().unwrap(), ArrayD::from_elem(IxDyn(&[2, 2, 2]), 9u8));
    assert_eq!(da::arange(&client, 0i64, 100, 1, 25).unwrap().compute().unwrap(), Array1::from_iter(0i64..100).into_dyn());
    assert_eq!(da::arange(&client, 10i64, -3, -4, 2).unwrap().compute().unwrap(), Array1::from(vec![10i64, 6, 2, -2]).into_dyn());
    let lin = da::linspace(&client, 0.0, 1.0, 11, 4).unwrap().compute().unwrap();
    assert!(lin.iter().zip(Array1::linspace(0.0, 1.0, 11).iter()).all(|(a, b)| (a - b).abs() < 1e-12));
    assert_eq!(da::eye::<f64>(&client, 5, 2).unwrap().compute().unwrap(), Array2::<f64>::eye(5).into_dyn());
    // Empty arrays are arrays too.
    let empty = da::zeros::<f64>(&client, &[0, 4], &[3, 3]).unwrap();
    assert_eq!(empty.compute().unwrap().shape(), &[0, 4]);
    assert_eq!(empty.sum().unwrap().compute_scalar().unwrap(), 0.0);
}

#[test]
fn random_blocks_do_not_depend_on_the_number_of_workers() {
    let draw = |workers| {
        let c = cluster(workers);
        let client = c.client();
        let u = da::random::uniform(&client, &[50, 40], &[16, 16], 11).unwrap().compute().unwrap();
        let n = da::random::normal(&client, &[200, 500], &[64, 128], 12, 3.0, 2.0).unwrap();
        (u, n.mean().unwrap().compute_scalar().unwrap(), n.std().unwrap().compute_scalar().unwrap())
    };
    let (u1, m1, s1) = draw(1);
    let (u3, m3, s3) = draw(3);
    assert_eq!(u1, u3);
    assert_eq!((m1, s1), (m3, s3));
    assert!(u1.iter().all(|v| (0.0..1.0).contains(v)));
    assert!((m1 - 3.0).abs() < 0.05 && (s1 - 2.0).abs() < 0.05, "mean {m1}, std {s1}");
    // Another seed, other numbers.
    let c = cluster(1);
    let other = da::random::uniform(&c.client(), &[50, 40], &[16, 16], 12).unwrap().compute().unwrap();
    assert_ne!(other, u1);
}

#[test]
fn persisted_blocks_stay_on_the_workers_and_are_reused() {
    let c = cluster(2);
    let client = c.client();
    let x = da::random::uniform(&client, &[100, 100], &[50, 50], 5).unwrap();
    let kept = (&x * 2.0).persist().unwrap();
    assert_eq!(kept.task_count(), 0, "nothing left to run");
    let a = kept.compute().unwrap();
    assert_eq!(a, kept.compute().unwrap());
    assert_eq!(a, (&x * 2.0).compute().unwrap());
    let summed = (&kept + 1.0).sum().unwrap();
    assert!((summed.compute_scalar().unwrap() - (a.sum() + 10_000.0)).abs() < 1e-6);
}

#[test]
fn display_shows_shape_chunks_sizes_and_tasks() {
    let c = cluster(1);
    let client = c.client();
    let x = da::random::uniform(&client, &[50_000, 50_000], &[5_000, 5_000], 0).unwrap();
    let shown = (&x + &x.t()).to_string();
    assert!(shown.contains("chorus::Array<f64>") && shown.contains("[50000, 50000]"), "{shown}");
    assert!(shown.contains("(5000, 5000)") && shown.contains("10 × 10 = 100 blocks"), "{shown}");
    assert!(shown.contains("18.63 GiB") && shown.contains("190.73 MiB"), "{shown}");
    assert!(shown.contains("100 to compute"), "{shown}");
}

#[test]
fn visualize_draws_the_seeds_sum_as_its_inputs_fused_expression_and_tree() {
    let c = cluster(1);
    let client = c.client();
    let x = da::random::uniform(&client, &[50_000, 50_000], &[5_000, 5_000], 0).unwrap();
    let total = (&x + &x.t()).sum().unwrap();
    let dir = std::env::temp_dir().join(format!("chorus-array-visualize-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("sum.dot");
    total.visualize(&path).unwrap();
    let dot = std::fs::read_to_string(&path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(dot.starts_with("digraph array"), "{dot}");
    assert!(dot.contains("add\\nf64 50000×50000, 100 blocks (10×10)"), "the fused expression: {dot}");
    assert!(dot.contains("uniform\\nf64 50000×50000, 100 blocks"), "its random input: {dot}");
    assert!(dot.contains("[label=\"transposed\"]"), "read a second time, transposed: {dot}");
    assert!(dot.contains("sum over axes"), "the tree of sums: {dot}");
    assert_eq!(client.snapshot(Default::default()).unwrap().totals.finished, 0, "visualize runs nothing");
}
