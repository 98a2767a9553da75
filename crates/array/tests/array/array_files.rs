//! `.npy` files: written by the workers and read back, files numpy wrote read by chorus
//! and files chorus wrote read by numpy, and damaged files refused by name.

use std::process::Command;

use chorus_array as da;
use ndarray::{ArrayD, IxDyn};

use crate::support::{cluster, scratch, test_python, values};

#[test]
fn arrays_written_to_npy_by_the_workers_read_back_in_other_chunks() {
    let c = cluster(2);
    let client = c.client();
    let a = values(&[37, 23, 5], 4);
    let x = da::from_ndarray(&client, &a, &[10, 7, 5]).unwrap();
    let path = scratch("roundtrip.npy");
    (&x * 2.0).to_npy(&path).unwrap();
    let back = da::read_npy::<f64>(&client, &path, &[8, 23, 2]).unwrap();
    assert_eq!(back.shape(), &[37, 23, 5]);
    assert_eq!(back.compute().unwrap(), &a * 2.0);
    // A file is an array like any other: sliced, transposed, reduced, without reading
    // the blocks a slice does not touch.
    let corner = back.slice(ndarray::s![..5, .., 1]).unwrap();
    assert_eq!(corner.task_count(), 1, "one block of the file holds the corner");
    assert_eq!(corner.compute().unwrap(), (&a * 2.0).slice(ndarray::s![..5, .., 1]).into_dyn().to_owned());
    assert!((back.t().sum().unwrap().compute_scalar().unwrap() - 2.0 * a.sum()).abs() < 1e-9);
    // Other element types, and an empty array.
    let flags = da::arange(&client, 0i32, 50, 1, 7).unwrap().gt(20).unwrap();
    flags.to_npy(scratch("flags.npy")).unwrap();
    assert_eq!(da::read_npy::<bool>(&client, scratch("flags.npy"), &[9]).unwrap().compute().unwrap(), flags.compute().unwrap());
    let bytes = da::full(&client, &[3, 0], &[2, 2], 7u8).unwrap();
    bytes.to_npy(scratch("empty.npy")).unwrap();
    assert_eq!(da::read_npy::<u8>(&client, scratch("empty.npy"), &[2, 2]).unwrap().compute().unwrap().shape(), &[3, 0]);
}

#[test]
fn damaged_files_and_wrong_types_are_errors_that_name_the_file() {
    let c = cluster(1);
    let client = c.client();
    let path = scratch("damaged.npy");
    da::arange(&client, 0i64, 1000, 1, 100).unwrap().to_npy(&path).unwrap();
    let e = da::read_npy::<f64>(&client, &path, &[100]).unwrap_err();
    assert!(matches!(&e, da::Error::Io { path: p, .. } if p == &path) && e.to_string().contains("i64"), "{e}");
    // Read while whole, then cut short: the task that reads a missing block says so.
    let x = da::read_npy::<i64>(&client, &path, &[100]).unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(128 + 500 * 8).unwrap();
    let e = x.compute().unwrap_err().to_string();
    assert!(e.contains("damaged.npy") && e.contains("block ["), "{e}");
    // Opened when already cut short: refused at once.
    let e = da::read_npy::<i64>(&client, &path, &[100]).unwrap_err().to_string();
    assert!(e.contains("truncated") && e.contains("damaged.npy"), "{e}");
    std::fs::write(&path, b"not an array").unwrap();
    assert!(da::read_npy::<i64>(&client, &path, &[100]).unwrap_err().to_string().contains("not a .npy file"));
    assert!(da::read_npy::<i64>(&client, scratch("missing.npy"), &[100]).unwrap_err().to_string().contains("cannot be opened"));
}

#[test]
fn files_numpy_wrote_are_read_and_files_chorus_wrote_are_read_by_numpy() {
    let Some(python) = test_python("numpy") else { return };
    let c = cluster(2);
    let client = c.client();
    let from_numpy = scratch("from_numpy.npy");
    let script = format!(
        "import numpy as np; a = np.arange(7 * 9 * 4, dtype='<f8').reshape(7, 9, 4) / 3; np.save({:?}, a); \
         np.save({:?}, (np.arange(30) % 4).astype('<i4')); np.save({:?}, np.arange(12).reshape(3, 4) % 3 == 0)",
        from_numpy.display().to_string(),
        scratch("ints.npy").display().to_string(),
        scratch("bools.npy").display().to_string()
    );
    assert!(Command::new(&python).args(["-c", &script]).status().unwrap().success());
    let want = ArrayD::from_shape_fn(IxDyn(&[7, 9, 4]), |i| ((i[0] * 9 + i[1]) * 4 + i[2]) as f64 / 3.0);
    assert_eq!(da::read_npy::<f64>(&client, &from_numpy, &[3, 4, 4]).unwrap().compute().unwrap(), want);
    let ints = da::read_npy::<i32>(&client, scratch("ints.npy"), &[8]).unwrap().compute().unwrap();
    assert_eq!(ints, ArrayD::from_shape_fn(IxDyn(&[30]), |i| (i[0] % 4) as i32));
    let bools = da::read_npy::<bool>(&client, scratch("bools.npy"), &[2, 2]).unwrap().compute().unwrap();
    assert_eq!(bools, ArrayD::from_shape_fn(IxDyn(&[3, 4]), |i| (i[0] * 4 + i[1]) % 3 == 0));

    let to_numpy = scratch("to_numpy.npy");
    let x = da::random::uniform(&client, &[40, 30], &[16, 16], 3).unwrap();
    x.to_npy(&to_numpy).unwrap();
    let sum = x.sum().unwrap().compute_scalar().unwrap();
    let check = format!("import numpy as np; a = np.load({:?}); assert a.shape == (40, 30) and a.dtype == np.float64, a; print(repr(float(a.sum())))", to_numpy.display().to_string());
    let out = Command::new(&python).args(["-c", &check]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let theirs: f64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!((theirs - sum).abs() < 1e-9, "numpy's sum {theirs}, chorus's {sum}");
}
