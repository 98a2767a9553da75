//! HDF5 datasets (the `hdf5` feature): files h5py wrote, read by the workers, in the
//! dataset's own blocks and in others, and bad input refused by name.

use chorus_array as da;
use ndarray::{ArrayD, IxDyn};

use crate::support::{cluster, run_python, scratch, test_python};

#[test]
fn datasets_h5py_wrote_are_read_by_the_workers() {
    let Some(python) = test_python("h5py") else { return };
    let c = cluster(2);
    let client = c.client();
    let path = scratch("from_h5py.hdf5");
    let script = format!(
        "import numpy as np, h5py\n\
         with h5py.File({:?}, 'w') as f:\n\
         \x20   f.create_dataset('x', data=np.arange(7 * 9 * 4, dtype='<f8').reshape(7, 9, 4) / 3, chunks=(3, 4, 4), compression='gzip')\n\
         \x20   f.create_dataset('ints', data=(np.arange(30) % 4).astype('<i4'))\n\
         \x20   f.create_dataset('g/flags', data=np.arange(12).reshape(3, 4) % 3 == 0)\n\
         \x20   f.create_dataset('g/bytes', data=np.arange(256, dtype='u1'), chunks=(16,))\n\
         \x20   f.create_dataset('big', data=np.ones((3000, 3000), dtype='<f4'), chunks=(1000, 1000))\n\
         \x20   f.create_dataset('scalar', data=2.5)\n\
         \x20   f.create_dataset('f2', data=np.zeros(3, dtype='<f2'))\n",
        path.display().to_string()
    );
    run_python(&python, &script);
    let want = ArrayD::from_shape_fn(IxDyn(&[7, 9, 4]), |i| ((i[0] * 9 + i[1]) * 4 + i[2]) as f64 / 3.0);
    let x = da::read_hdf5::<f64>(&client, &path, "x", None).unwrap();
    assert_eq!(x.chunks().axes(), &[vec![7], vec![9], vec![4]], "a small dataset is one block");
    assert_eq!(x.compute().unwrap(), want);
    let y = da::read_hdf5::<f64>(&client, &path, "/x", Some(&[2, 5, 3])).unwrap();
    assert_eq!(y.compute().unwrap(), want);
    assert_eq!(y.slice(ndarray::s![1.., 2..7, 3]).unwrap().compute().unwrap(), want.slice(ndarray::s![1.., 2..7, 3]).into_dyn().to_owned());
    let ints = da::read_hdf5::<i32>(&client, &path, "ints", Some(&[8])).unwrap().compute().unwrap();
    assert_eq!(ints, ArrayD::from_shape_fn(IxDyn(&[30]), |i| (i[0] % 4) as i32));
    let flags = da::read_hdf5::<bool>(&client, &path, "g/flags", Some(&[2, 3])).unwrap().compute().unwrap();
    assert_eq!(flags, ArrayD::from_shape_fn(IxDyn(&[3, 4]), |i| (i[0] * 4 + i[1]) % 3 == 0));
    let bytes = da::read_hdf5::<u8>(&client, &path, "g/bytes", Some(&[50])).unwrap();
    assert_eq!(bytes.astype::<i64>().sum().unwrap().compute_scalar().unwrap(), 255 * 256 / 2);
    // Storage chunks of 4 MB grow to blocks of whole chunks of at most 64 MiB.
    let big = da::read_hdf5::<f32>(&client, &path, "big", None).unwrap();
    assert_eq!(big.chunks().axes(), &[vec![3000], vec![3000]]);
    assert_eq!(big.sum().unwrap().compute_scalar().unwrap(), 9e6);
    assert_eq!(da::read_hdf5::<f64>(&client, &path, "scalar", None).unwrap().compute_scalar().unwrap(), 2.5);

    // Bad input, each named.
    let e = da::read_hdf5::<f32>(&client, &path, "x", None).unwrap_err();
    assert!(matches!(&e, da::Error::Io { path: p, .. } if p == &path) && e.to_string().contains("f64"), "{e}");
    let e = da::read_hdf5::<f64>(&client, &path, "nope", None).unwrap_err().to_string();
    assert!(e.contains("from_h5py.hdf5") && e.contains("no dataset \"nope\""), "{e}");
    let e = da::read_hdf5::<f64>(&client, &path, "f2", None).unwrap_err().to_string();
    assert!(e.contains("\"f2\"") && e.contains("type"), "{e}");
    std::fs::write(scratch("not.hdf5"), b"plain text").unwrap();
    let e = da::read_hdf5::<f64>(&client, scratch("not.hdf5"), "x", None).unwrap_err().to_string();
    assert!(e.contains("not.hdf5") && e.contains("cannot be opened as an HDF5 file"), "{e}");
    // Cut short after it was opened: the task that reads a block says which.
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(4096).unwrap();
    let e = y.compute().unwrap_err().to_string();
    assert!(e.contains("from_h5py.hdf5") && e.contains("block ["), "{e}");
}
