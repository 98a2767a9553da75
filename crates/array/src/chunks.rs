//! How an array is cut into blocks.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The lengths of the blocks along each axis: `(5000, 5000, 2000)` for an axis of 12,000
/// in chunks of 5,000. Every axis has at least one block (an empty axis has one empty
/// block), and the lengths along an axis add up to the axis's length.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunks(Vec<Vec<usize>>);

impl Chunks {
    /// Blocks of `chunk` elements along each axis of `shape`, the last one along an axis
    /// shorter when the chunk does not divide the length.
    pub fn regular(shape: &[usize], chunk: &[usize]) -> Result<Chunks> {
        if chunk.len() != shape.len() {
            return Err(Error::Chunks(format!("chunks {chunk:?} have {} axes, the shape {shape:?} has {}", chunk.len(), shape.len())));
        }
        let axes = shape
            .iter()
            .zip(chunk)
            .enumerate()
            .map(|(axis, (&n, &c))| {
                if c == 0 {
                    return Err(Error::Chunks(format!("a chunk length of 0 on axis {axis} (shape {shape:?}, chunks {chunk:?})")));
                }
                if n == 0 {
                    return Ok(vec![0]);
                }
                let mut v = vec![c; n / c];
                if n % c != 0 {
                    v.push(n % c);
                }
                Ok(v)
            })
            .collect::<Result<_>>()?;
        Ok(Chunks(axes))
    }

    /// Blocks of the given lengths; they must add up to each axis's length.
    pub fn explicit(shape: &[usize], lengths: Vec<Vec<usize>>) -> Result<Chunks> {
        if lengths.len() != shape.len() {
            return Err(Error::Chunks(format!("chunk lengths for {} axes given for the shape {shape:?}", lengths.len())));
        }
        for (axis, (n, ls)) in shape.iter().zip(&lengths).enumerate() {
            let total: usize = ls.iter().sum();
            if ls.is_empty() || total != *n || (*n > 0 && ls.contains(&0)) {
                return Err(Error::Chunks(format!("the chunks {ls:?} of axis {axis} do not add up to its length {n} (shape {shape:?})")));
            }
        }
        Ok(Chunks(lengths))
    }

    /// The block lengths of each axis.
    pub fn axes(&self) -> &[Vec<usize>] {
        &self.0
    }

    /// Blocks along each axis.
    pub fn grid(&self) -> Vec<usize> {
        self.0.iter().map(Vec::len).collect()
    }

    /// Blocks in all.
    pub fn count(&self) -> usize {
        self.0.iter().map(Vec::len).product()
    }

    /// The shape of block `index`.
    pub fn block_shape(&self, index: &[usize]) -> Vec<usize> {
        self.0.iter().zip(index).map(|(ls, &i)| ls[i]).collect()
    }

    /// Where block `index` starts.
    pub fn block_offset(&self, index: &[usize]) -> Vec<usize> {
        self.0.iter().zip(index).map(|(ls, &i)| ls[..i].iter().sum()).collect()
    }

    /// Where block `index` lies along each axis, to cut it out of (or put it into) an
    /// ndarray of the whole array with `slice_each_axis`.
    pub(crate) fn region(&self, index: &[usize]) -> Vec<ndarray::Slice> {
        self.block_offset(index).into_iter().zip(self.block_shape(index)).map(|(o, n)| ndarray::Slice::from(o..o + n)).collect()
    }

    /// Every block index, in row-major order (the order of [`Chunks::flat`]).
    pub fn indices(&self) -> Vec<Vec<usize>> {
        let grid = self.grid();
        let mut out = Vec::with_capacity(self.count());
        let mut idx = vec![0usize; grid.len()];
        for _ in 0..self.count() {
            out.push(idx.clone());
            for axis in (0..grid.len()).rev() {
                idx[axis] += 1;
                if idx[axis] < grid[axis] {
                    break;
                }
                idx[axis] = 0;
            }
        }
        out
    }

    /// The position of block `index` in row-major order.
    pub fn flat(&self, index: &[usize]) -> usize {
        self.0.iter().zip(index).fold(0, |acc, (ls, &i)| acc * ls.len() + i)
    }

    /// The largest block's number of elements.
    pub fn largest_block(&self) -> usize {
        self.0.iter().map(|ls| ls.iter().copied().max().unwrap_or(0)).product()
    }

    /// The chunks with axis `k` of the result taken from axis `perm[k]`.
    pub(crate) fn permuted(&self, perm: &[usize]) -> Chunks {
        Chunks(perm.iter().map(|&p| self.0[p].clone()).collect())
    }

    /// The chunks without the given axes.
    pub(crate) fn without(&self, axes: &[usize]) -> Chunks {
        Chunks(self.0.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, v)| v.clone()).collect())
    }

    /// The chunks with `extra` unit axes in front.
    pub(crate) fn with_leading(&self, extra: usize) -> Chunks {
        let mut axes = vec![vec![1]; extra];
        axes.extend(self.0.iter().cloned());
        Chunks(axes)
    }

    pub(crate) fn from_axes(axes: Vec<Vec<usize>>) -> Chunks {
        Chunks(axes)
    }
}

impl std::fmt::Display for Chunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `(5000, 5000)` when each axis is regular but for its last block.
        let regular = self.0.iter().all(|ls| ls.len() <= 1 || ls[..ls.len() - 1].iter().all(|l| *l == ls[0]) && ls[ls.len() - 1] <= ls[0]);
        if regular {
            let firsts: Vec<String> = self.0.iter().map(|ls| ls[0].to_string()).collect();
            write!(f, "({})", firsts.join(", "))
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}
