//! Zarr arrays: written by the workers and read back, arrays zarr-python wrote (plain,
//! sharded, version 2) read by chorus and arrays chorus wrote read by zarr-python, and
//! damaged arrays refused by name.

use chorus_array as da;
use ndarray::{ArrayD, IxDyn};

use crate::support::{cluster, run_python, scratch, test_python, values};

#[test]
fn arrays_written_to_zarr_by_the_workers_read_back_in_their_chunks_and_in_others() {
    let c = cluster(2);
    let client = c.client();
    // Lengths that the chunks do not divide: the last chunks are partly outside.
    let a = values(&[37, 23, 5], 6);
    let x = da::from_ndarray(&client, &a, &[10, 7, 5]).unwrap();
    let path = scratch("roundtrip.zarr");
    (&x * 2.0).to_zarr(&path).unwrap();
    let meta = std::fs::read_to_string(path.join("zarr.json")).unwrap();
    assert!(meta.contains("\"zarr_format\": 3") && meta.contains("zstd"), "{meta}");
    let back = da::read_zarr::<f64>(&client, &path, None).unwrap();
    assert_eq!((back.shape(), back.chunks().axes()), (&[37, 23, 5][..], x.chunks().axes()));
    assert_eq!(back.compute().unwrap(), &a * 2.0);
    // Other blocks than the chunks: each reads the region it covers.
    let other = da::read_zarr::<f64>(&client, &path, Some(&[8, 23, 2])).unwrap();
    assert_eq!(other.compute().unwrap(), &a * 2.0);
    let corner = other.slice(ndarray::s![..5, .., 1]).unwrap();
    assert_eq!(corner.task_count(), 1, "one block holds the corner");
    assert_eq!(corner.compute().unwrap(), (&a * 2.0).slice(ndarray::s![..5, .., 1]).into_dyn().to_owned());
    // Every element type, a 0-d array and an empty one.
    let n = da::arange(&client, 0i64, 50, 1, 7).unwrap();
    for (name, check) in [
        ("i64.zarr", Box::new(|p: &std::path::Path| {
            n.to_zarr(p).unwrap();
            assert_eq!(da::read_zarr::<i64>(&client, p, None).unwrap().compute().unwrap(), n.compute().unwrap());
        }) as Box<dyn Fn(&std::path::Path)>),
        ("i32.zarr", Box::new(|p| {
            let y = n.astype::<i32>();
            y.to_zarr(p).unwrap();
            assert_eq!(da::read_zarr::<i32>(&client, p, Some(&[50])).unwrap().compute().unwrap(), y.compute().unwrap());
        })),
        ("u8.zarr", Box::new(|p| {
            let y = n.astype::<u8>();
            y.to_zarr(p).unwrap();
            assert_eq!(da::read_zarr::<u8>(&client, p, None).unwrap().compute().unwrap(), y.compute().unwrap());
        })),
        ("f32.zarr", Box::new(|p| {
            let y = n.astype::<f32>();
            y.to_zarr(p).unwrap();
            assert_eq!(da::read_zarr::<f32>(&client, p, None).unwrap().compute().unwrap(), y.compute().unwrap());
        })),
        ("bool.zarr", Box::new(|p| {
            let y = n.gt(20).unwrap();
            y.to_zarr(p).unwrap();
            assert_eq!(da::read_zarr::<bool>(&client, p, Some(&[9])).unwrap().compute().unwrap(), y.compute().unwrap());
        })),
        ("scalar.zarr", Box::new(|p| {
            let y = n.sum().unwrap();
            y.to_zarr(p).unwrap();
            assert_eq!(da::read_zarr::<i64>(&client, p, None).unwrap().compute_scalar().unwrap(), 1225);
        })),
        ("empty.zarr", Box::new(|p| {
            da::full(&client, &[3, 0], &[2, 2], 7u8).unwrap().to_zarr(p).unwrap();
            assert_eq!(da::read_zarr::<u8>(&client, p, None).unwrap().compute().unwrap().shape(), &[3, 0]);
        })),
    ] {
        check(&scratch(name));
    }
}

#[test]
fn bad_zarr_input_is_an_error_that_names_the_array_and_the_block() {
    let c = cluster(1);
    let client = c.client();
    let path = scratch("damaged.zarr");
    let x = da::arange(&client, 0i64, 1000, 1, 100).unwrap();
    x.to_zarr(&path).unwrap();
    // Written once; a second write to the same path is refused before any task runs.
    let e = x.to_zarr(&path).unwrap_err();
    assert!(matches!(&e, da::Error::Io { path: p, .. } if p == &path) && e.to_string().contains("already exists"), "{e}");
    let e = da::read_zarr::<f64>(&client, &path, None).unwrap_err();
    assert!(matches!(&e, da::Error::Io { path: p, .. } if p == &path) && e.to_string().contains("i64"), "{e}");
    // Chunk 3 is overwritten with junk after the array was opened: the task that reads
    // it names the array and the block, and the blocks around it are still readable.
    let y = da::read_zarr::<i64>(&client, &path, None).unwrap();
    std::fs::write(path.join("c").join("3"), b"not zstd at all").unwrap();
    let e = y.compute().unwrap_err().to_string();
    assert!(e.contains("damaged.zarr") && e.contains("block [3]"), "{e}");
    assert_eq!(y.slice(ndarray::s![..300]).unwrap().sum().unwrap().compute_scalar().unwrap(), (0..300).sum::<i64>());
    // Not an array at all, or absent.
    std::fs::write(scratch("plain.txt"), b"hello").unwrap();
    assert!(da::read_zarr::<i64>(&client, scratch("plain.txt"), None).unwrap_err().to_string().contains("is not a directory"));
    std::fs::create_dir_all(scratch("empty-dir.zarr")).unwrap();
    let e = da::read_zarr::<i64>(&client, scratch("empty-dir.zarr"), None).unwrap_err().to_string();
    assert!(e.contains("empty-dir.zarr") && e.contains("not a Zarr array"), "{e}");
    // Blocks of several lengths cannot be Zarr chunks.
    let joined = da::concatenate(&[&da::arange(&client, 0i64, 30, 1, 30).unwrap(), &x], 0).unwrap();
    let e = joined.to_zarr(scratch("joined.zarr")).unwrap_err();
    assert!(matches!(e, da::Error::Chunks(_)) && e.to_string().contains("rechunk"), "{e}");
    assert!(!scratch("joined.zarr").exists(), "nothing is written for an array refused");
}

#[test]
fn arrays_zarr_python_wrote_are_read_and_arrays_chorus_wrote_are_read_by_zarr_python() {
    let Some(python) = test_python("zarr") else { return };
    let c = cluster(2);
    let client = c.client();
    let (plain, sharded, v2, ints) = (scratch("py-plain.zarr"), scratch("py-sharded.zarr"), scratch("py-v2.zarr"), scratch("py-ints.zarr"));
    let script = format!(
        "import numpy as np, zarr, numcodecs\n\
         a = np.arange(7 * 9 * 4, dtype='<f8').reshape(7, 9, 4) / 3\n\
         zarr.create_array({plain:?}, data=a, chunks=(3, 4, 4))\n\
         zarr.create_array({sharded:?}, data=a, chunks=(1, 3, 2), shards=(7, 6, 4))\n\
         zarr.create_array({v2:?}, data=a, chunks=(4, 4, 4), zarr_format=2, compressors=numcodecs.Zstd())\n\
         zarr.create_array({ints:?}, data=(np.arange(30) % 4).astype('<i4'), chunks=(8,))\n\
         zarr.create_array({shorts:?}, data=np.arange(4, dtype='<i2'))\n",
        plain = plain.display().to_string(),
        shorts = scratch("py-shorts.zarr").display().to_string(),
        sharded = sharded.display().to_string(),
        v2 = v2.display().to_string(),
        ints = ints.display().to_string(),
    );
    run_python(&python, &script);
    let want = ArrayD::from_shape_fn(IxDyn(&[7, 9, 4]), |i| ((i[0] * 9 + i[1]) * 4 + i[2]) as f64 / 3.0);
    let x = da::read_zarr::<f64>(&client, &plain, None).unwrap();
    assert_eq!(x.chunks().axes(), &[vec![3, 3, 1], vec![4, 4, 1], vec![4]]);
    assert_eq!(x.compute().unwrap(), want);
    // A sharded array's blocks are its shards.
    let s = da::read_zarr::<f64>(&client, &sharded, None).unwrap();
    assert_eq!(s.chunks().axes(), &[vec![7], vec![6, 3], vec![4]]);
    assert_eq!(s.compute().unwrap(), want);
    assert_eq!(da::read_zarr::<f64>(&client, &sharded, Some(&[2, 2, 2])).unwrap().compute().unwrap(), want);
    assert_eq!(da::read_zarr::<f64>(&client, &v2, None).unwrap().compute().unwrap(), want);
    let e = da::read_zarr::<i64>(&client, scratch("py-shorts.zarr"), None).unwrap_err().to_string();
    assert!(e.contains("py-shorts.zarr") && e.contains("int16"), "{e}");
    let i = da::read_zarr::<i32>(&client, &ints, Some(&[7])).unwrap().compute().unwrap();
    assert_eq!(i, ArrayD::from_shape_fn(IxDyn(&[30]), |i| (i[0] % 4) as i32));

    let ours = scratch("to-python.zarr");
    let y = da::random::uniform(&client, &[40, 30], &[16, 16], 3).unwrap();
    y.to_zarr(&ours).unwrap();
    let sum = y.sum().unwrap().compute_scalar().unwrap();
    let check = format!(
        "import numpy as np, zarr\n\
         z = zarr.open_array({:?}, mode='r')\n\
         assert z.shape == (40, 30) and z.dtype == np.float64 and z.chunks == (16, 16), (z.shape, z.dtype, z.chunks)\n\
         print(repr(float(z[:].sum())))",
        ours.display().to_string()
    );
    let theirs: f64 = run_python(&python, &check).trim().parse().unwrap();
    assert!((theirs - sum).abs() < 1e-9, "zarr-python's sum {theirs}, chorus's {sum}");
}
