//! Block products on OpenBLAS when the machine has it, found when the first product
//! runs; ndarray's own kernels (matrixmultiply) otherwise.
//!
//! Measured here on one core, 2,000² f64 blocks: OpenBLAS 49–51 GFLOP/s, matrixmultiply
//! 40–44 (1.17× in OpenBLAS's favour; end to end, `bench-array --dot` shows 1.00–1.15×). Loading the
//! library at run time (`libopenblas.so.0`, Debian's `libopenblas0`) instead of linking
//! it keeps the build free of system libraries: a machine without it still runs every
//! product, at matrixmultiply's speed. Each product task is one of the worker's
//! threads, so OpenBLAS is told to use one thread itself.
//!
//! `CHORUS_BLAS=off` makes products use matrixmultiply even where OpenBLAS is present
//! (to compare the two); `auto`, the default, uses OpenBLAS when it loads.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use ndarray::{Array2, ArrayView2};

const ROW_MAJOR: c_int = 101;
const NO_TRANS: c_int = 111;
const TRANS: c_int = 112;

type Gemm<T> = unsafe extern "C" fn(c_int, c_int, c_int, c_int, c_int, c_int, T, *const T, c_int, *const T, c_int, T, *mut T, c_int);

/// OpenBLAS's two general products, once loaded.
struct OpenBlas {
    dgemm: Gemm<f64>,
    sgemm: Gemm<f32>,
}

/// Whether the value of `CHORUS_BLAS` asks for OpenBLAS, or why it is refused.
fn wanted(value: Option<&str>) -> Result<bool, String> {
    match value {
        None | Some("" | "auto") => Ok(true),
        Some("off") => Ok(false),
        Some(other) => Err(format!("CHORUS_BLAS={other:?} is not a setting: use auto (OpenBLAS when the machine has it, the default) or off (ndarray's matrixmultiply)")),
    }
}

fn load() -> Option<OpenBlas> {
    for name in [c"libopenblas.so.0", c"libopenblas.so"] {
        // SAFETY: dlopen with a constant, NUL-terminated name; the handle is kept for the
        // life of the process (never closed), so the symbols stay valid.
        let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if handle.is_null() {
            continue;
        }
        let symbol = |s: &CStr| -> *mut c_void {
            // SAFETY: a live handle and a NUL-terminated name.
            unsafe { libc::dlsym(handle, s.as_ptr() as *const c_char) }
        };
        let (d, s, threads) = (symbol(c"cblas_dgemm"), symbol(c"cblas_sgemm"), symbol(c"openblas_set_num_threads"));
        if d.is_null() || s.is_null() || threads.is_null() {
            continue;
        }
        // SAFETY: these are OpenBLAS's CBLAS entry points and its thread setting, whose C
        // signatures the function pointer types repeat (LP64: 32-bit integers).
        unsafe {
            let set_threads: unsafe extern "C" fn(c_int) = std::mem::transmute::<*mut c_void, unsafe extern "C" fn(c_int)>(threads);
            set_threads(1);
            return Some(OpenBlas { dgemm: std::mem::transmute::<*mut c_void, Gemm<f64>>(d), sgemm: std::mem::transmute::<*mut c_void, Gemm<f32>>(s) });
        }
    }
    None
}

/// OpenBLAS, if it is wanted and loads; an error for a bad `CHORUS_BLAS`.
fn openblas() -> Result<Option<&'static OpenBlas>, String> {
    static BLAS: OnceLock<Result<Option<OpenBlas>, String>> = OnceLock::new();
    match BLAS.get_or_init(|| Ok(if wanted(std::env::var("CHORUS_BLAS").ok().as_deref())? { load() } else { None })) {
        Ok(b) => Ok(b.as_ref()),
        Err(e) => Err(e.clone()),
    }
}

/// How BLAS reads a matrix view in place: transposed or not, and its leading dimension;
/// `None` when neither its rows nor its columns are contiguous.
fn layout<T>(m: &ArrayView2<'_, T>) -> Option<(c_int, c_int)> {
    let (rows, cols) = m.dim();
    let s = m.strides();
    if (s[1] == 1 || cols <= 1) && s[0] >= cols.max(1) as isize {
        Some((NO_TRANS, s[0] as c_int))
    } else if (s[0] == 1 || rows <= 1) && s[1] >= rows.max(1) as isize {
        Some((TRANS, s[1] as c_int))
    } else {
        None
    }
}

macro_rules! product {
    ($name:ident, $t:ty, $gemm:ident) => {
        /// `c += a · b` on OpenBLAS; `false` (and `c` untouched) when it is not in use, a
        /// dimension is 0 or too large for BLAS's 32-bit integers, or `c` is not a
        /// row-major m × n array.
        pub(crate) fn $name(a: &Array2<$t>, b: &Array2<$t>, c: &mut Array2<$t>) -> Result<bool, String> {
            let Some(blas) = openblas()? else { return Ok(false) };
            let ((m, k), n) = (a.dim(), b.ncols());
            if m == 0 || n == 0 || k == 0 || [m, n, k].iter().any(|&d| d > c_int::MAX as usize / 2) || c.dim() != (m, n) || !c.is_standard_layout() {
                return Ok(false);
            }
            let (a, b) = (readable(a), readable(b));
            let ((ta, lda), (tb, ldb)) = (layout(&a.view()).expect("standard layout"), layout(&b.view()).expect("standard layout"));
            // SAFETY: `a` is m × k, `b` is k × n and `c` is a row-major m × n, in the
            // layouts and leading dimensions given; OpenBLAS reads and writes only within.
            unsafe {
                (blas.$gemm)(ROW_MAJOR, ta, tb, m as c_int, n as c_int, k as c_int, 1.0, a.as_ptr(), lda, b.as_ptr(), ldb, 1.0, c.as_mut_ptr(), n as c_int);
            }
            Ok(true)
        }
    };
}

product!(dgemm, f64, dgemm);
product!(sgemm, f32, sgemm);

/// `m` as it is when BLAS can read it in place, or else a row-major copy.
fn readable<T: Clone>(m: &Array2<T>) -> std::borrow::Cow<'_, Array2<T>> {
    if layout(&m.view()).is_some() {
        std::borrow::Cow::Borrowed(m)
    } else {
        std::borrow::Cow::Owned(m.as_standard_layout().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::s;

    fn values(rows: usize, cols: usize, seed: usize) -> Array2<f64> {
        Array2::from_shape_fn((rows, cols), |(i, j)| ((i * 31 + j * 17 + seed) % 23) as f64 - 11.0)
    }

    #[test]
    fn openblas_products_match_ndarray_in_every_layout() {
        let a = values(37, 21, 1);
        let b = values(21, 13, 2);
        let want = a.dot(&b);
        let product = |a: &Array2<f64>, b: &Array2<f64>| {
            let mut c = Array2::zeros((a.nrows(), b.ncols()));
            dgemm(a, b, &mut c).unwrap().then_some(c)
        };
        let Some(c) = product(&a, &b) else {
            let why = "OpenBLAS (libopenblas.so.0) is not on this machine";
            assert!(std::env::var("CHORUS_REQUIRE_OPENBLAS").map_or(true, |v| v != "1"), "{why} (CHORUS_REQUIRE_OPENBLAS=1)");
            eprintln!("SKIPPED: {why}");
            return;
        };
        assert_eq!(c, want);
        // Transposed (column-major), and sliced so that neither axis is contiguous.
        let column_major = |m: &Array2<f64>| m.t().as_standard_layout().into_owned().reversed_axes();
        let (at, bt) = (column_major(&a), column_major(&b));
        assert_eq!((at.clone(), layout(&at.view())), (a.clone(), Some((TRANS, 37))));
        assert_eq!(product(&at, &bt).unwrap(), want);
        let wide = values(37, 42, 3);
        let strided = wide.slice(s![.., ..;2]).to_owned();
        assert_eq!(product(&strided, &b).unwrap(), strided.dot(&b));
        // Into a sum: c += a · b.
        let mut sum = want.clone();
        assert!(dgemm(&a, &b, &mut sum).unwrap());
        assert_eq!(sum, &want * 2.0);
        let (af, bf) = (a.mapv(|v| v as f32), b.mapv(|v| v as f32));
        let mut cf = Array2::zeros((37, 13));
        assert!(sgemm(&af, &bf, &mut cf).unwrap());
        assert_eq!(cf, af.dot(&bf));
        // Empty products, and sums of another shape, are left to ndarray.
        assert!(product(&values(3, 0, 0), &values(0, 4, 0)).is_none());
        assert!(!dgemm(&a, &b, &mut Array2::zeros((2, 2))).unwrap());
    }

    #[test]
    fn chorus_blas_takes_auto_or_off_and_names_itself_otherwise() {
        assert_eq!(wanted(None), Ok(true));
        assert_eq!(wanted(Some("auto")), Ok(true));
        assert_eq!(wanted(Some("off")), Ok(false));
        let e = wanted(Some("mkl")).unwrap_err();
        assert!(e.contains("CHORUS_BLAS=\"mkl\"") && e.contains("auto") && e.contains("off"), "{e}");
    }
}
