//! Bad input is an error when the expression is built, before any task runs, naming the
//! shapes involved.

use chorus_array as da;
use chorus_array::Error;

use crate::support::cluster;

#[test]
fn shapes_chunks_axes_and_types_are_checked_when_the_expression_is_built() {
    let c = cluster(1);
    let client = c.client();
    let x = da::zeros::<f64>(&client, &[4, 6], &[2, 3]).unwrap();
    let y = da::zeros::<f64>(&client, &[4, 5], &[2, 3]).unwrap();
    let e = x.try_add(&y).unwrap_err();
    assert!(matches!(&e, Error::Broadcast { left, right } if left == &[4, 6] && right == &[4, 5]), "{e}");
    assert!(e.to_string().contains("[4, 6]") && e.to_string().contains("[4, 5]"));

    let other_chunks = da::zeros::<f64>(&client, &[4, 6], &[4, 3]).unwrap();
    let e = x.try_mul(&other_chunks).unwrap_err();
    assert!(matches!(e, Error::Chunks(_)) && e.to_string().contains("axis 0"), "{e}");

    assert!(matches!(x.sum_axes(&[2]).unwrap_err(), Error::Axis(m) if m.contains("[4, 6]")));
    assert!(matches!(x.transpose(&[0, 0]).unwrap_err(), Error::Axis(_)));
    assert!(matches!(x.swap_axes(0, 5).unwrap_err(), Error::Axis(_)));
    assert!(matches!(da::zeros::<f64>(&client, &[4, 6], &[2]).unwrap_err(), Error::Chunks(_)));
    assert!(matches!(da::zeros::<f64>(&client, &[4, 6], &[0, 2]).unwrap_err(), Error::Chunks(_)));
    assert!(matches!(da::Chunks::explicit(&[10], vec![vec![3, 3, 3]]).unwrap_err(), Error::Chunks(m) if m.contains("do not add up")));
    assert!(matches!(da::arange(&client, 0i64, 10, 0, 3).unwrap_err(), Error::Invalid(_)));
    assert!(matches!(x.clone().split_every(1).unwrap_err(), Error::Invalid(_)));

    let ints = da::ones::<i64>(&client, &[3], &[2]).unwrap();
    let e = ints.sqrt().unwrap_err();
    assert!(matches!(&e, Error::Invalid(m) if m.contains("astype")), "{e}");
    let flags = ints.gt(0).unwrap();
    assert!(matches!(flags.try_add(&flags).unwrap_err(), Error::Invalid(_)));
    assert!(matches!(da::zeros::<f64>(&client, &[0, 3], &[1, 1]).unwrap().min().unwrap_err(), Error::Invalid(m) if m.contains("empty")));
    assert!(matches!(x.compute_scalar().unwrap_err(), Error::Invalid(_)));

    // None of it submitted a task (the scheduler would still hold it: nothing was
    // gathered or released).
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(c.status().unwrap().tasks, 0);
}

#[test]
#[should_panic(expected = "do not broadcast")]
fn operators_panic_like_ndarrays_on_shapes_that_do_not_broadcast() {
    let c = cluster(1);
    let client = c.client();
    let x = da::zeros::<f64>(&client, &[4, 6], &[2, 3]).unwrap();
    let y = da::zeros::<f64>(&client, &[3], &[3]).unwrap();
    let _ = &x + &y;
}
