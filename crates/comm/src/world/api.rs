//! The typed collectives and point-to-point calls of [`World`].

use bytemuck::Pod;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::core::{Call, Core};
use super::World;
use crate::frame::{type_hash, CollectiveOp};
use crate::reduce::ReduceOp;
use crate::{Error, Result};

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value)
        .map_err(|e| Error::Encode { type_name: std::any::type_name::<T>(), detail: e.to_string() })
}

fn decode<T: DeserializeOwned>(core: &Core, peer: usize, bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::Decode {
        rank: core.rank(),
        peer,
        type_name: std::any::type_name::<T>(),
        detail: e.to_string(),
    })
}

fn to_vec<T: Pod>(core: &Core, peer: usize, bytes: &[u8]) -> Result<Vec<T>> {
    let width = std::mem::size_of::<T>();
    if width == 0 || bytes.len() % width != 0 {
        return Err(Error::Decode {
            rank: core.rank(),
            peer,
            type_name: std::any::type_name::<T>(),
            detail: format!("{} bytes is not a whole number of {width}-byte elements", bytes.len()),
        });
    }
    let mut out = vec![T::zeroed(); bytes.len() / width];
    bytemuck::cast_slice_mut::<T, u8>(&mut out).copy_from_slice(bytes);
    Ok(out)
}

fn begin<T: ?Sized>(core: &Core, op: CollectiveOp, root: usize) -> Result<Call> {
    core.begin(op, root, type_hash::<T>(), std::any::type_name::<T>())
}

fn check_parts(core: &Core, op: CollectiveOp, got: usize) -> Result<()> {
    if got != core.size() {
        return Err(Error::InvalidArgument(format!(
            "{}: rank {} passed {got} parts for a job of {} ranks (one part per rank is needed)",
            op.name(),
            core.rank(),
            core.size()
        )));
    }
    Ok(())
}

/// Elementwise combination of two equal-length slices' bytes.
fn combine_slices<T: Pod, O: ReduceOp<T>>(core: &Core, op: &O, a: Bytes, b: Bytes) -> Result<Bytes> {
    if a.len() != b.len() {
        let width = std::mem::size_of::<T>().max(1);
        return Err(Error::CollectiveMismatch(format!(
            "ranks passed slices of different lengths ({} and {} elements of {}) to a reduction",
            a.len() / width,
            b.len() / width,
            std::any::type_name::<T>()
        )));
    }
    let mut left: Vec<T> = to_vec(core, core.rank(), &a)?;
    let right: Vec<T> = to_vec(core, core.rank(), &b)?;
    for (l, r) in left.iter_mut().zip(right) {
        *l = op.combine(*l, r);
    }
    Ok(Bytes::copy_from_slice(bytemuck::cast_slice(&left)))
}

impl World {
    /// Blocks until every rank has called `barrier`.
    pub fn barrier(&self) -> Result<()> {
        self.run(|core| async move {
            let call = core.begin(CollectiveOp::Barrier, 0, 0, "()")?;
            core.dissemination_barrier(&call).await
        })
    }

    /// Broadcasts the root's value to every rank. The root passes `Some(value)`, the other
    /// ranks `None` (their argument is ignored).
    ///
    /// ```
    /// # let world = chorus_comm::World::single();
    /// let config = world.bcast(0, (world.rank() == 0).then(|| vec!["a".to_string(), "b".into()])).unwrap();
    /// assert_eq!(config.len(), 2);
    /// ```
    pub fn bcast<T: Serialize + DeserializeOwned>(&self, root: usize, value: Option<T>) -> Result<T> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Bcast, root)?;
            if core.rank() == root {
                let value = value.ok_or_else(|| Error::InvalidArgument("bcast: the root must pass Some(value)".into()))?;
                core.bcast_bytes(&call, Some(&encode(&value)?)).await?;
                Ok(value)
            } else {
                let bytes = core.bcast_bytes(&call, None).await?.expect("non-roots receive");
                decode(core, root, &bytes)
            }
        })
    }

    /// Broadcasts the root's buffer: on the other ranks `buf` is replaced by the root's
    /// contents (its allocation is reused when large enough).
    pub fn bcast_slice<T: Pod>(&self, root: usize, buf: &mut Vec<T>) -> Result<()> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Bcast, root)?;
            if core.rank() == root {
                core.bcast_bytes(&call, Some(bytemuck::cast_slice(buf))).await?;
            } else {
                let bytes = core.bcast_bytes(&call, None).await?.expect("non-roots receive");
                let width = std::mem::size_of::<T>().max(1);
                if bytes.len() % width != 0 {
                    return Err(Error::CollectiveMismatch(format!(
                        "bcast_slice: rank {root} sent {} bytes, not a whole number of {}",
                        bytes.len(),
                        std::any::type_name::<T>()
                    )));
                }
                buf.clear();
                buf.resize(bytes.len() / width, T::zeroed());
                bytemuck::cast_slice_mut::<T, u8>(buf).copy_from_slice(&bytes);
            }
            Ok(())
        })
    }

    /// Gathers one value from every rank at the root, in rank order. Returns `Some` on the
    /// root and `None` elsewhere.
    pub fn gatherv<T: Serialize + DeserializeOwned>(&self, root: usize, part: &T) -> Result<Option<Vec<T>>> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Gatherv, root)?;
            let parts = core.gatherv_bytes(&call, &encode(part)?).await?;
            parts.map(|parts| parts.iter().enumerate().map(|(q, b)| decode(core, q, b)).collect()).transpose()
        })
    }

    /// Gathers one slice from every rank at the root (slices may differ in length).
    pub fn gatherv_slice<T: Pod>(&self, root: usize, part: &[T]) -> Result<Option<Vec<Vec<T>>>> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Gatherv, root)?;
            let parts = core.gatherv_bytes(&call, bytemuck::cast_slice(part)).await?;
            parts.map(|parts| parts.iter().enumerate().map(|(q, b)| to_vec(core, q, b)).collect()).transpose()
        })
    }

    /// Sends `parts[q]` from the root to rank `q`; every rank returns its own part. The root
    /// passes `Some` with exactly `size()` parts, the other ranks `None`.
    pub fn scatterv<T: Serialize + DeserializeOwned>(&self, root: usize, parts: Option<&[T]>) -> Result<T> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Scatterv, root)?;
            let encoded = match (core.rank() == root, parts) {
                (true, Some(parts)) => {
                    check_parts(core, CollectiveOp::Scatterv, parts.len())?;
                    Some(parts.iter().map(encode).collect::<Result<Vec<_>>>()?)
                }
                (true, None) => return Err(Error::InvalidArgument("scatterv: the root must pass Some(parts)".into())),
                (false, _) => None,
            };
            let refs: Option<Vec<&[u8]>> = encoded.as_ref().map(|e| e.iter().map(Vec::as_slice).collect());
            let mine = core.scatterv_bytes(&call, refs.as_deref()).await?;
            decode(core, root, &mine)
        })
    }

    /// [`scatterv`](Self::scatterv) for plain numbers.
    pub fn scatterv_slice<T: Pod, P: AsRef<[T]>>(&self, root: usize, parts: Option<&[P]>) -> Result<Vec<T>> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Scatterv, root)?;
            let refs: Option<Vec<&[u8]>> = match (core.rank() == root, parts) {
                (true, Some(parts)) => {
                    check_parts(core, CollectiveOp::Scatterv, parts.len())?;
                    Some(parts.iter().map(|p| bytemuck::cast_slice(p.as_ref())).collect())
                }
                (true, None) => return Err(Error::InvalidArgument("scatterv_slice: the root must pass Some(parts)".into())),
                (false, _) => None,
            };
            let mine = core.scatterv_bytes(&call, refs.as_deref()).await?;
            to_vec(core, root, &mine)
        })
    }

    /// Every rank receives every rank's value, in rank order.
    pub fn allgatherv<T: Serialize + DeserializeOwned>(&self, part: &T) -> Result<Vec<T>> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Allgatherv, 0)?;
            let parts = core.allgatherv_bytes(&call, Bytes::from(encode(part)?)).await?;
            parts.iter().enumerate().map(|(q, b)| decode(core, q, b)).collect()
        })
    }

    /// Every rank receives every rank's slice, in rank order.
    pub fn allgatherv_slice<T: Pod>(&self, part: &[T]) -> Result<Vec<Vec<T>>> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Allgatherv, 0)?;
            let parts = core.allgatherv_bytes(&call, Bytes::copy_from_slice(bytemuck::cast_slice(part))).await?;
            parts.iter().enumerate().map(|(q, b)| to_vec(core, q, b)).collect()
        })
    }

    /// Combines every rank's value with `op`; the root gets `Some(result)`, the others
    /// `None`.
    pub fn reduce<T, O>(&self, root: usize, value: T, op: O) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        O: ReduceOp<T>,
    {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Reduce, root)?;
            let mut combine = |a: Bytes, b: Bytes| encode(&op.combine(decode(core, 0, &a)?, decode(core, 0, &b)?)).map(Bytes::from);
            let out = core.reduce_bytes(&call, Bytes::from(encode(&value)?), &mut combine).await?;
            out.map(|b| decode(core, 0, &b)).transpose()
        })
    }

    /// Combines every rank's value with `op` and gives every rank the result.
    ///
    /// ```
    /// use chorus_comm::{World, Max};
    /// let world = World::single();
    /// assert_eq!(world.allreduce(7_i64, Max).unwrap(), 7);
    /// ```
    pub fn allreduce<T, O>(&self, value: T, op: O) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        O: ReduceOp<T>,
    {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Allreduce, 0)?;
            let mut combine = |a: Bytes, b: Bytes| encode(&op.combine(decode(core, 0, &a)?, decode(core, 0, &b)?)).map(Bytes::from);
            let out = core.allreduce_bytes(&call, Bytes::from(encode(&value)?), &mut combine).await?;
            decode(core, 0, &out)
        })
    }

    /// Elementwise reduction of equal-length slices; the result lands in the root's `buf`
    /// (other ranks' buffers are left as they were).
    pub fn reduce_slice<T: Pod, O: ReduceOp<T>>(&self, root: usize, buf: &mut [T], op: O) -> Result<()> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Reduce, root)?;
            let mut combine = |a: Bytes, b: Bytes| combine_slices(core, &op, a, b);
            let mine = Bytes::copy_from_slice(bytemuck::cast_slice(buf));
            if let Some(out) = core.reduce_bytes(&call, mine, &mut combine).await? {
                copy_into(core, buf, &out)?;
            }
            Ok(())
        })
    }

    /// Elementwise reduction of equal-length slices; every rank's `buf` receives the result.
    pub fn allreduce_slice<T: Pod, O: ReduceOp<T>>(&self, buf: &mut [T], op: O) -> Result<()> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Allreduce, 0)?;
            let mut combine = |a: Bytes, b: Bytes| combine_slices(core, &op, a, b);
            let mine = Bytes::copy_from_slice(bytemuck::cast_slice(buf));
            let out = core.allreduce_bytes(&call, mine, &mut combine).await?;
            copy_into(core, buf, &out)
        })
    }

    /// Sends `parts[q]` to rank `q` and returns the part every rank sent to this one.
    pub fn alltoallv<T: Serialize + DeserializeOwned>(&self, parts: &[T]) -> Result<Vec<T>> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Alltoallv, 0)?;
            check_parts(core, CollectiveOp::Alltoallv, parts.len())?;
            let encoded = parts.iter().map(encode).collect::<Result<Vec<_>>>()?;
            let refs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
            let got = core.alltoallv_bytes(&call, &refs).await?;
            got.iter().enumerate().map(|(q, b)| decode(core, q, b)).collect()
        })
    }

    /// [`alltoallv`](Self::alltoallv) for plain numbers.
    pub fn alltoallv_slice<T: Pod, P: AsRef<[T]>>(&self, parts: &[P]) -> Result<Vec<Vec<T>>> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Alltoallv, 0)?;
            check_parts(core, CollectiveOp::Alltoallv, parts.len())?;
            let refs: Vec<&[u8]> = parts.iter().map(|p| bytemuck::cast_slice(p.as_ref())).collect();
            let got = core.alltoallv_bytes(&call, &refs).await?;
            got.iter().enumerate().map(|(q, b)| to_vec(core, q, b)).collect()
        })
    }

    /// Sends `value` to rank `dest` with `tag`. Returns once the message is handed to the
    /// operating system; messages between two ranks with the same tag arrive in order.
    pub fn send<T: Serialize>(&self, dest: usize, tag: u64, value: &T) -> Result<()> {
        self.run(|core| async move {
            check_rank(core, dest, "send")?;
            core.send_tagged(dest, tag, type_hash::<T>(), &encode(value)?).await
        })
    }

    /// Receives the next message with `tag` from rank `src`.
    pub fn recv<T: DeserializeOwned>(&self, src: usize, tag: u64) -> Result<T> {
        self.run(|core| async move {
            check_rank(core, src, "recv")?;
            let bytes = core.recv_tagged(src, tag, type_hash::<T>(), std::any::type_name::<T>()).await?;
            decode(core, src, &bytes)
        })
    }

    /// [`send`](Self::send) for plain numbers.
    pub fn send_slice<T: Pod>(&self, dest: usize, tag: u64, data: &[T]) -> Result<()> {
        self.run(|core| async move {
            check_rank(core, dest, "send_slice")?;
            core.send_tagged(dest, tag, type_hash::<[T]>(), bytemuck::cast_slice(data)).await
        })
    }

    /// [`recv`](Self::recv) for plain numbers.
    pub fn recv_slice<T: Pod>(&self, src: usize, tag: u64) -> Result<Vec<T>> {
        self.run(|core| async move {
            check_rank(core, src, "recv_slice")?;
            let bytes = core.recv_tagged(src, tag, type_hash::<[T]>(), std::any::type_name::<[T]>()).await?;
            to_vec(core, src, &bytes)
        })
    }
}

fn check_rank(core: &Core, rank: usize, what: &str) -> Result<()> {
    if rank >= core.size() {
        return Err(Error::InvalidArgument(format!("{what}: rank {rank} is out of range for a job of {} ranks", core.size())));
    }
    Ok(())
}

fn copy_into<T: Pod>(core: &Core, buf: &mut [T], bytes: &[u8]) -> Result<()> {
    let dst = bytemuck::cast_slice_mut::<T, u8>(buf);
    if dst.len() != bytes.len() {
        return Err(Error::CollectiveMismatch(format!(
            "rank {}: a reduction returned {} bytes for a buffer of {}",
            core.rank(),
            bytes.len(),
            dst.len()
        )));
    }
    dst.copy_from_slice(bytes);
    Ok(())
}
