//! Elementwise operations, casts and reductions on blocks of any element type.

use ndarray::{ArrayD, Axis, IxDyn, Zip};

use super::{BinaryOp, Expr, ReduceOp, UnaryOp};
use crate::dtype::{Block, DType, Scalar};

/// The shape two operands broadcast to (numpy's rules), or `None`.
pub(crate) fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let at = |s: &[usize], k: usize| if k + s.len() >= n { s[k + s.len() - n] } else { 1 };
    (0..n)
        .map(|k| match (at(a, k), at(b, k)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

fn zip2<A: Clone, B: Clone, O>(a: &ArrayD<A>, b: &ArrayD<B>, f: impl Fn(A, B) -> O) -> Result<ArrayD<O>, String> {
    // Equal contiguous shapes, the common case: one pass over two slices.
    if a.shape() == b.shape() {
        if let (Some(x), Some(y)) = (a.as_slice(), b.as_slice()) {
            let v: Vec<O> = x.iter().zip(y).map(|(x, y)| f(x.clone(), y.clone())).collect();
            return ArrayD::from_shape_vec(a.raw_dim(), v).map_err(|e| e.to_string());
        }
    }
    let shape = broadcast_shape(a.shape(), b.shape()).ok_or_else(|| format!("blocks of shapes {:?} and {:?} do not broadcast", a.shape(), b.shape()))?;
    let (av, bv) = (a.broadcast(IxDyn(&shape)).expect("checked"), b.broadcast(IxDyn(&shape)).expect("checked"));
    Ok(Zip::from(&av).and(&bv).map_collect(|x, y| f(x.clone(), y.clone())))
}

fn scalar_block(s: Scalar) -> Block {
    let sh = IxDyn(&[]);
    match s {
        Scalar::F64(v) => Block::F64(ArrayD::from_elem(sh, v)),
        Scalar::F32(v) => Block::F32(ArrayD::from_elem(sh, v)),
        Scalar::I64(v) => Block::I64(ArrayD::from_elem(sh, v)),
        Scalar::I32(v) => Block::I32(ArrayD::from_elem(sh, v)),
        Scalar::U8(v) => Block::U8(ArrayD::from_elem(sh, v)),
        Scalar::Bool(v) => Block::Bool(ArrayD::from_elem(sh, v)),
    }
}

/// Evaluates `expr` over the task's input blocks.
pub(crate) fn eval(expr: &Expr, leaves: Vec<Block>) -> Result<Block, String> {
    let mut uses = vec![0u32; leaves.len()];
    count_uses(expr, &mut uses);
    let mut leaves: Vec<Option<Block>> = leaves.into_iter().map(Some).collect();
    eval_in(expr, &mut leaves, &mut uses)
}

fn count_uses(expr: &Expr, uses: &mut [u32]) {
    match expr {
        Expr::Leaf(k) => {
            if let Some(u) = uses.get_mut(*k as usize) {
                *u += 1;
            }
        }
        Expr::Scalar(_) => {}
        Expr::Unary(_, a) | Expr::Cast(_, a) => count_uses(a, uses),
        Expr::Binary(_, a, b) => {
            count_uses(a, uses);
            count_uses(b, uses);
        }
        Expr::Where(c, a, b) => {
            count_uses(c, uses);
            count_uses(a, uses);
            count_uses(b, uses);
        }
    }
}

/// Evaluates `expr`; an input is moved into its last use and copied for the others.
fn eval_in(expr: &Expr, leaves: &mut [Option<Block>], uses: &mut [u32]) -> Result<Block, String> {
    let eval = |e: &Expr, leaves: &mut [Option<Block>], uses: &mut [u32]| eval_in(e, leaves, uses);
    Ok(match expr {
        Expr::Leaf(k) => {
            let k = *k as usize;
            let missing = || format!("the plan names input {k}, which it does not have");
            let u = uses.get_mut(k).ok_or_else(missing)?;
            *u = u.saturating_sub(1);
            if *u == 0 {
                leaves[k].take().ok_or_else(missing)?
            } else {
                leaves[k].clone().ok_or_else(missing)?
            }
        }
        Expr::Scalar(s) => scalar_block(*s),
        Expr::Unary(op, a) => unary(*op, eval(a, leaves, uses)?)?,
        Expr::Binary(op, a, b) => {
            let a = eval(a, leaves, uses)?;
            binary(*op, a, eval(b, leaves, uses)?)?
        }
        Expr::Where(c, a, b) => {
            let Block::Bool(c) = eval(c, leaves, uses)? else { return Err("a condition that is not a bool block".into()) };
            let a = eval(a, leaves, uses)?;
            let b = eval(b, leaves, uses)?;
            macro_rules! pick {
                ($($v:ident),*) => {
                    match (a, b) {
                        $((Block::$v(x), Block::$v(y)) => {
                            let xy = zip2(&x, &y, |x, y| (x, y))?;
                            Block::$v(zip2(&c, &xy, |c, (x, y)| if c { x } else { y })?)
                        })*
                        (x, y) => return Err(format!("where over {} and {} blocks", x.dtype(), y.dtype())),
                    }
                };
            }
            pick!(F64, F32, I64, I32, U8, Bool)
        }
        Expr::Cast(to, a) => cast(eval(a, leaves, uses)?, *to),
    })
}

fn unary(op: UnaryOp, a: Block) -> Result<Block, String> {
    macro_rules! float {
        ($a:expr, $f:expr) => {
            match $a {
                Block::F64(x) => Block::F64(x.mapv($f)),
                Block::F32(x) => Block::F32(x.mapv(|v| $f(f64::from(v)) as f32)),
                other => return Err(format!("{op:?} of a {} block; cast it to f64 first", other.dtype())),
            }
        };
    }
    Ok(match op {
        UnaryOp::Neg => match a {
            Block::F64(x) => Block::F64(x.mapv(|v| -v)),
            Block::F32(x) => Block::F32(x.mapv(|v| -v)),
            Block::I64(x) => Block::I64(x.mapv(i64::wrapping_neg)),
            Block::I32(x) => Block::I32(x.mapv(i32::wrapping_neg)),
            other => return Err(format!("negation of a {} block", other.dtype())),
        },
        UnaryOp::Abs => match a {
            Block::F64(x) => Block::F64(x.mapv(f64::abs)),
            Block::F32(x) => Block::F32(x.mapv(f32::abs)),
            Block::I64(x) => Block::I64(x.mapv(i64::wrapping_abs)),
            Block::I32(x) => Block::I32(x.mapv(i32::wrapping_abs)),
            Block::U8(x) => Block::U8(x),
            Block::Bool(_) => return Err("abs of a bool block".into()),
        },
        UnaryOp::Sqrt => float!(a, f64::sqrt),
        UnaryOp::Exp => float!(a, f64::exp),
        UnaryOp::Log => float!(a, f64::ln),
        UnaryOp::Not => match a {
            Block::Bool(x) => Block::Bool(x.mapv(|v| !v)),
            other => return Err(format!("not of a {} block", other.dtype())),
        },
    })
}

fn binary(op: BinaryOp, a: Block, b: Block) -> Result<Block, String> {
    macro_rules! cmp {
        ($x:expr, $y:expr) => {
            Block::Bool(match op {
                BinaryOp::Lt => zip2(&$x, &$y, |a, b| a < b)?,
                BinaryOp::Le => zip2(&$x, &$y, |a, b| a <= b)?,
                BinaryOp::Gt => zip2(&$x, &$y, |a, b| a > b)?,
                BinaryOp::Ge => zip2(&$x, &$y, |a, b| a >= b)?,
                BinaryOp::Eq => zip2(&$x, &$y, |a, b| a == b)?,
                _ => zip2(&$x, &$y, |a, b| a != b)?,
            })
        };
    }
    macro_rules! arith {
        ($v:ident, $x:expr, $y:expr, $add:expr, $sub:expr, $mul:expr, $div:expr, $pow:expr) => {
            Block::$v(match op {
                BinaryOp::Add => zip2(&$x, &$y, $add)?,
                BinaryOp::Sub => zip2(&$x, &$y, $sub)?,
                BinaryOp::Mul => zip2(&$x, &$y, $mul)?,
                BinaryOp::Div => zip2(&$x, &$y, $div)?,
                _ => zip2(&$x, &$y, $pow)?,
            })
        };
    }
    if op.compares() {
        return Ok(match (a, b) {
            (Block::F64(x), Block::F64(y)) => cmp!(x, y),
            (Block::F32(x), Block::F32(y)) => cmp!(x, y),
            (Block::I64(x), Block::I64(y)) => cmp!(x, y),
            (Block::I32(x), Block::I32(y)) => cmp!(x, y),
            (Block::U8(x), Block::U8(y)) => cmp!(x, y),
            (Block::Bool(x), Block::Bool(y)) => cmp!(x, y),
            (x, y) => return Err(format!("{op:?} of {} and {} blocks", x.dtype(), y.dtype())),
        });
    }
    // Integer division by zero gives zero and overflow wraps, rather than a panic in the
    // middle of a block (numpy warns and gives 0 too).
    Ok(match (a, b) {
        (Block::F64(x), Block::F64(y)) => arith!(F64, x, y, |a, b| a + b, |a, b| a - b, |a, b| a * b, |a, b| a / b, f64::powf),
        (Block::F32(x), Block::F32(y)) => arith!(F32, x, y, |a, b| a + b, |a, b| a - b, |a, b| a * b, |a, b| a / b, f32::powf),
        (Block::I64(x), Block::I64(y)) => arith!(
            I64,
            x,
            y,
            i64::wrapping_add,
            i64::wrapping_sub,
            i64::wrapping_mul,
            |a, b| a.checked_div(b).unwrap_or(0),
            |a, b| if b < 0 { 0 } else { a.wrapping_pow(b.min(u32::MAX as i64) as u32) }
        ),
        (Block::I32(x), Block::I32(y)) => arith!(
            I32,
            x,
            y,
            i32::wrapping_add,
            i32::wrapping_sub,
            i32::wrapping_mul,
            |a, b| a.checked_div(b).unwrap_or(0),
            |a, b| if b < 0 { 0 } else { a.wrapping_pow(b as u32) }
        ),
        (Block::U8(x), Block::U8(y)) => arith!(
            U8,
            x,
            y,
            u8::wrapping_add,
            u8::wrapping_sub,
            u8::wrapping_mul,
            |a, b| a.checked_div(b).unwrap_or(0),
            |a, b| a.wrapping_pow(u32::from(b))
        ),
        (x, y) => return Err(format!("{op:?} of {} and {} blocks", x.dtype(), y.dtype())),
    })
}

/// Converts like numpy's `astype` (`as` casts; a number is `true` unless it is zero).
pub(crate) fn cast(a: Block, to: DType) -> Block {
    macro_rules! from {
        ($x:expr, $t:ty) => {
            match to {
                DType::F64 => Block::F64($x.mapv(|v| v as f64)),
                DType::F32 => Block::F32($x.mapv(|v| v as f32)),
                DType::I64 => Block::I64($x.mapv(|v| v as i64)),
                DType::I32 => Block::I32($x.mapv(|v| v as i32)),
                DType::U8 => Block::U8($x.mapv(|v| v as u8)),
                DType::Bool => Block::Bool($x.mapv(|v| v != (0 as $t))),
            }
        };
    }
    if a.dtype() == to {
        return a;
    }
    match a {
        Block::F64(x) => from!(x, f64),
        Block::F32(x) => from!(x, f32),
        Block::I64(x) => from!(x, i64),
        Block::I32(x) => from!(x, i32),
        Block::U8(x) => from!(x, u8),
        Block::Bool(x) => from!(x.mapv(u8::from), u8),
    }
}

/// The element type a sum has (numpy widens small integers and bools to 64 bits).
pub(crate) fn sum_dtype(d: DType) -> DType {
    match d {
        DType::I32 | DType::U8 | DType::Bool => DType::I64,
        other => other,
    }
}

/// Reduces `a` over `axes`, keeping them with length 1.
pub(crate) fn reduce(a: Block, op: ReduceOp, axes: &[usize]) -> Result<Block, String> {
    let a = if op == ReduceOp::Sum {
        let to = sum_dtype(a.dtype());
        cast(a, to)
    } else {
        a
    };
    fn along<T: Clone>(mut x: ArrayD<T>, axes: &[usize], f: impl Fn(ndarray::ArrayViewD<'_, T>) -> T) -> Result<ArrayD<T>, String> {
        // Over every axis of a contiguous block: one pass over its memory.
        if axes.len() == x.ndim() && x.ndim() > 1 && x.is_standard_layout() {
            let n = x.len();
            let flat = x.into_shape_with_order(IxDyn(&[n])).map_err(|e| e.to_string())?;
            let v = f(flat.view());
            return ArrayD::from_shape_vec(IxDyn(&vec![1; axes.len()]), vec![v]).map_err(|e| e.to_string());
        }
        for &ax in axes {
            if ax >= x.ndim() {
                return Err(format!("a reduction over axis {ax} of a block of {} axes", x.ndim()));
            }
            x = x.map_axis(Axis(ax), |lane| f(lane.into_dyn())).insert_axis(Axis(ax));
        }
        Ok(x)
    }
    macro_rules! red {
        ($v:ident, $x:expr) => {
            Block::$v(match op {
                // ndarray's sum keeps several partial sums, so it is not one long chain
                // of dependent additions.
                ReduceOp::Sum => along($x, axes, |l| l.sum())?,
                // NaN wins, as in numpy. An empty lane cannot reach here: the driver
                // refuses min and max over an empty axis.
                ReduceOp::Min => along($x, axes, |l| l.iter().copied().reduce(|m, v| if v < m || v != v { v } else { m }).unwrap_or_default())?,
                ReduceOp::Max => along($x, axes, |l| l.iter().copied().reduce(|m, v| if v > m || v != v { v } else { m }).unwrap_or_default())?,
                ReduceOp::ArgMin | ReduceOp::ArgMax => unreachable!("arg reductions return above"),
            })
        };
    }
    if op.is_arg() {
        return Err("an arg reduction planned as a plain one".into());
    }
    Ok(match a {
        Block::F64(x) => red!(F64, x),
        Block::F32(x) => red!(F32, x),
        Block::I64(x) => red!(I64, x),
        Block::I32(x) => red!(I32, x),
        Block::U8(x) => red!(U8, x),
        Block::Bool(x) => match op {
            ReduceOp::Min => Block::Bool(along(x, axes, |l| l.iter().all(|v| *v))?),
            ReduceOp::Max => Block::Bool(along(x, axes, |l| l.iter().any(|v| *v))?),
            ReduceOp::Sum => unreachable!("a sum of bools is cast to i64 above"),
            ReduceOp::ArgMin | ReduceOp::ArgMax => unreachable!("arg reductions return above"),
        },
    })
}

/// Combines two partials of the same shape.
pub(crate) fn combine(a: Block, b: Block, op: ReduceOp) -> Result<Block, String> {
    match op {
        ReduceOp::Sum => binary(BinaryOp::Add, a, b),
        ReduceOp::ArgMin | ReduceOp::ArgMax => Err("arg partials combined as plain ones".into()),
        ReduceOp::Min | ReduceOp::Max => {
            macro_rules! pick {
                ($($v:ident),*) => {
                    match (a, b) {
                        $((Block::$v(x), Block::$v(y)) => Ok(Block::$v(zip2(&x, &y, |x, y| {
                            #[allow(clippy::eq_op)]
                            let nan = x != x;
                            if nan || (op == ReduceOp::Min && x <= y) || (op == ReduceOp::Max && x >= y) { x } else { y }
                        })?)),)*
                        (x, y) => Err(format!("combining {} and {} partials", x.dtype(), y.dtype())),
                    }
                };
            }
            pick!(F64, F32, I64, I32, U8, Bool)
        }
    }
}


/// A (values, indices) partial of an arg reduction as bytes: the length of the encoded
/// values, then both blocks.
pub(crate) fn pair(values: &Block, indices: &Block) -> Vec<u8> {
    let v = values.encode();
    let mut out = (v.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&v);
    out.extend_from_slice(&indices.encode());
    out
}

/// Reads a partial written by [`pair`].
pub(crate) fn unpair(bytes: &[u8]) -> Result<(Block, Block), String> {
    let (len, rest) = bytes.split_at_checked(8).ok_or("a partial cut short")?;
    let len = usize::try_from(u64::from_le_bytes(len.try_into().expect("8 bytes"))).map_err(|_| "a partial too long")?;
    let (v, i) = rest.split_at_checked(len).ok_or("a partial cut short")?;
    Ok((Block::decode(v)?, Block::decode(i)?))
}

/// Whether `x` beats `y` (NaN beats everything, as numpy's argmin and argmax find it).
fn beats<T: PartialOrd>(x: &T, y: &T, max: bool) -> bool {
    #[allow(clippy::eq_op)]
    let (xn, yn) = (x != x, y != y);
    if xn || yn {
        return xn && !yn;
    }
    if max {
        x > y
    } else {
        x < y
    }
}

/// The best value and its global index, along `axis` (kept with length 1) or over the
/// whole block (a flat index into the array of shape `full`, the block at `offset`).
pub(crate) fn arg_reduce(a: Block, max: bool, axis: Option<usize>, offset: &[usize], full: &[usize]) -> Result<(Block, Block), String> {
    fn along<T: Copy + PartialOrd>(a: &ArrayD<T>, max: bool, axis: Option<usize>, offset: &[usize], full: &[usize]) -> Result<(ArrayD<T>, ArrayD<i64>), String> {
        match axis {
            Some(k) => {
                if k >= a.ndim() || a.shape()[k] == 0 {
                    return Err(format!("an arg reduction over axis {k} of a block of shape {:?}", a.shape()));
                }
                let mut shape = a.shape().to_vec();
                shape[k] = 1;
                let (mut values, mut indices) = (Vec::new(), Vec::new());
                for lane in a.lanes(Axis(k)) {
                    let (mut best, mut at) = (lane[0], 0usize);
                    for (i, v) in lane.iter().enumerate().skip(1) {
                        if beats(v, &best, max) {
                            (best, at) = (*v, i);
                        }
                    }
                    values.push(best);
                    indices.push((offset[k] + at) as i64);
                }
                let sh = IxDyn(&shape);
                Ok((ArrayD::from_shape_vec(sh.clone(), values).map_err(|e| e.to_string())?, ArrayD::from_shape_vec(sh, indices).map_err(|e| e.to_string())?))
            }
            None => {
                let mut it = a.indexed_iter();
                let (first, v0) = it.next().ok_or("an arg reduction of an empty block")?;
                let (mut best, mut at) = (*v0, first);
                for (i, v) in it {
                    if beats(v, &best, max) {
                        (best, at) = (*v, i);
                    }
                }
                let mut flat = 0i64;
                for j in 0..full.len() {
                    flat = flat * full[j] as i64 + (offset[j] + at[j]) as i64;
                }
                let sh = IxDyn(&vec![1; a.ndim()]);
                Ok((ArrayD::from_elem(sh.clone(), best), ArrayD::from_elem(sh, flat)))
            }
        }
    }
    macro_rules! each {
        ($($v:ident),*) => {
            match &a {
                $(Block::$v(x) => {
                    let (v, i) = along(x, max, axis, offset, full)?;
                    (Block::$v(v), Block::I64(i))
                })*
            }
        };
    }
    Ok(each!(F64, F32, I64, I32, U8, Bool))
}

/// Two (values, indices) partials of the same shape combined: the better value, the
/// smaller index on ties.
pub(crate) fn arg_combine(a: (Block, Block), b: (Block, Block), max: bool) -> Result<(Block, Block), String> {
    let (Block::I64(ia), Block::I64(ib)) = (&a.1, &b.1) else { return Err("arg partials whose indices are not i64".into()) };
    macro_rules! each {
        ($($v:ident),*) => {
            match (&a.0, &b.0) {
                $((Block::$v(va), Block::$v(vb)) => {
                    if va.shape() != vb.shape() || ia.shape() != va.shape() || ib.shape() != vb.shape() {
                        return Err("arg partials of different shapes".into());
                    }
                    let mut v = va.clone();
                    let mut i = ia.clone();
                    ndarray::Zip::from(&mut v).and(&mut i).and(vb).and(ib).for_each(|v, i, w, j| {
                        #[allow(clippy::eq_op)]
                        let tie = (*w == *v) || (*w != *w && *v != *v);
                        if beats(w, v, max) || (tie && *j < *i) {
                            *v = *w;
                            *i = *j;
                        }
                    });
                    (Block::$v(v), Block::I64(i))
                })*
                (x, y) => return Err(format!("arg partials of {} and {}", x.dtype(), y.dtype())),
            }
        };
    }
    Ok(each!(F64, F32, I64, I32, U8, Bool))
}

