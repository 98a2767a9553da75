//! The typed collectives and point-to-point calls of [`World`].

use bytemuck::Pod;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::collectives::SEGMENTED_ALLREDUCE;
use super::core::{Call, Core, PodFill, Received};
use super::World;
use crate::frame::{type_hash, CollectiveOp};
use crate::reduce::ReduceOp;
use crate::{Error, Result};

/// The type tag of serde point-to-point messages: their types are checked by decoding, so
/// that a `&str` sent may be received as a `String`. Slices carry their element type's
/// hash, since any bytes decode as numbers.
const SERDE_MESSAGE: u32 = 0;

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value)
        .map_err(|e| Error::Encode { type_name: std::any::type_name::<T>(), detail: e.to_string() })
}

/// Decodes a whole message as `T`; bytes left over mean the sender sent another type.
fn decode<T: DeserializeOwned>(core: &Core, peer: usize, bytes: &[u8]) -> Result<T> {
    let error = |detail: String| Error::Decode { rank: core.rank(), peer, type_name: std::any::type_name::<T>(), detail };
    match postcard::take_from_bytes(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(error(format!("{} of its {} bytes were left over: was another type sent?", rest.len(), bytes.len()))),
        Err(e) => Err(error(format!("{e}: was another type sent?"))),
    }
}

fn check_width<T: Pod>(core: &Core, peer: usize, len: usize) -> Result<()> {
    let width = std::mem::size_of::<T>();
    if width == 0 || len % width != 0 {
        return Err(Error::Decode {
            rank: core.rank(),
            peer,
            type_name: std::any::type_name::<T>(),
            detail: format!("{len} bytes is not a whole number of {width}-byte elements"),
        });
    }
    Ok(())
}

fn to_vec<T: Pod>(core: &Core, peer: usize, bytes: &[u8]) -> Result<Vec<T>> {
    check_width::<T>(core, peer, bytes.len())?;
    let mut out = vec![T::zeroed(); bytes.len() / std::mem::size_of::<T>()];
    bytemuck::cast_slice_mut::<T, u8>(&mut out).copy_from_slice(bytes);
    Ok(out)
}

fn received_vec<T: Pod>(core: &Core, peer: usize, message: &Received) -> Result<Vec<T>> {
    check_width::<T>(core, peer, message.total)?;
    let mut out = Vec::new();
    message.copy_into_vec(&mut out);
    Ok(out)
}

fn received_value<T: DeserializeOwned>(core: &Core, peer: usize, message: Received) -> Result<T> {
    decode(core, peer, &message.into_bytes())
}

/// Typed parts in rank order from received messages, with this rank's own part (`None`
/// in `parts`) supplied by `own`.
fn assemble<T>(
    parts: Vec<Option<Received>>,
    mut own: impl FnMut() -> Result<T>,
    mut convert: impl FnMut(usize, Received) -> Result<T>,
) -> Result<Vec<T>> {
    parts.into_iter().enumerate().map(|(q, m)| match m {
        Some(m) => convert(q, m),
        None => own(),
    }).collect()
}

fn begin<T: ?Sized>(core: &Core, op: CollectiveOp, root: usize) -> Result<Call> {
    core.begin(op, root, type_hash::<T>(), std::any::type_name::<T>())
}

/// [`begin`] for a collective that may go through the host's group segment.
fn begin_flat<T: ?Sized>(core: &Core, op: CollectiveOp) -> Result<(Call, Option<u64>)> {
    core.begin_flat(op, 0, type_hash::<T>(), std::any::type_name::<T>())
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

/// A broadcast's bytes going into a vector of numbers.
struct SliceSink<'a, T> {
    target: Option<&'a mut Vec<T>>,
    fill: Option<PodFill<'a, T>>,
    bad_length: Option<usize>,
    /// The announced size could not be allocated: the bytes are received and dropped.
    unallocatable: Option<usize>,
}

impl<T: Pod> SliceSink<'_, T> {
    fn start(&mut self, total: usize) {
        if self.fill.is_none() && self.bad_length.is_none() && self.unallocatable.is_none() {
            let width = std::mem::size_of::<T>();
            if width == 0 || total % width != 0 {
                self.bad_length = Some(total);
            } else if let Some(out) = self.target.take() {
                // The size is the root's word: reserved fallibly, so that no size a peer
                // announces can abort this process.
                if out.try_reserve_exact(total / width).is_err() {
                    self.unallocatable = Some(total);
                } else {
                    self.fill = Some(PodFill::new(out, total));
                }
            }
        }
    }
}

impl<T: Pod> super::collectives::Sink for SliceSink<'_, T> {
    fn room(&mut self, total: usize) -> Option<&mut [std::mem::MaybeUninit<u8>]> {
        self.start(total);
        self.fill.as_mut().map(PodFill::room)
    }

    fn filled(&mut self) {
        if let Some(fill) = self.fill.as_mut() {
            fill.mark_filled();
        }
    }

    fn chunk(&mut self, total: usize, chunk: Bytes) {
        self.start(total);
        if let Some(fill) = self.fill.as_mut() {
            fill.push(&chunk);
        }
    }
}

impl World {
    /// Blocks until every rank has called `barrier`.
    pub fn barrier(&self) -> Result<()> {
        self.check_not_async();
        let core = &self.core;
        let (call, gen) = core.begin_flat(CollectiveOp::Barrier, 0, 0, "()")?;
        // Through the group segment, a barrier whose ranks arrive together is over
        // before the runtime would have been entered.
        let started = match gen.and_then(|g| core.flat_start(&call, g, &[])).map(super::flat::Started::complete) {
            Some(Ok(_arrived)) => return Ok(()),
            Some(Err(started)) => Some(started),
            None => None,
        };
        self.run(|core| async move { core.barrier(&call, gen, started).await })
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
                core.bcast_bytes(&call, Some(&encode(&value)?), &mut Received::default()).await?;
                Ok(value)
            } else {
                let mut message = Received::default();
                core.bcast_bytes(&call, None, &mut message).await?;
                received_value(core, root, message)
            }
        })
    }

    /// Broadcasts the root's buffer: on the other ranks `buf` is replaced by the root's
    /// contents (its allocation is reused when large enough).
    pub fn bcast_slice<T: Pod>(&self, root: usize, buf: &mut Vec<T>) -> Result<()> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Bcast, root)?;
            if core.rank() == root {
                core.bcast_bytes(&call, Some(bytemuck::cast_slice(buf)), &mut Received::default()).await?;
            } else {
                // Copied straight into `buf` from the root's memory, or chunk by chunk as
                // the chunks arrive (their buffers recycled).
                buf.clear();
                let mut sink = SliceSink::<T> { target: Some(&mut *buf), fill: None, bad_length: None, unallocatable: None };
                core.bcast_bytes(&call, None, &mut sink).await?;
                if let Some(total) = sink.unallocatable {
                    return Err(Error::InvalidArgument(format!(
                        "bcast_slice: rank {} cannot allocate {total} bytes for the message of rank {root}",
                        core.rank()
                    )));
                }
                if let Some(total) = sink.bad_length {
                    return Err(Error::CollectiveMismatch(format!(
                        "bcast_slice: rank {root} sent {total} bytes, not a whole number of {}",
                        std::any::type_name::<T>()
                    )));
                }
                if let Some(fill) = sink.fill {
                    fill.finish();
                }
            }
            Ok(())
        })
    }

    /// Gathers one value from every rank at the root, in rank order. Returns `Some` on the
    /// root and `None` elsewhere.
    ///
    /// ```
    /// # let world = chorus_comm::World::single();
    /// let rows_read = 1234_u64;
    /// if let Some(all) = world.gatherv(0, &rows_read).unwrap() {
    ///     println!("rows per rank: {all:?}"); // only on the root
    /// }
    /// ```
    pub fn gatherv<T: Serialize + DeserializeOwned>(&self, root: usize, part: &T) -> Result<Option<Vec<T>>> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Gatherv, root)?;
            let mine = encode(part)?;
            let parts = core.gatherv_bytes(&call, &mine).await?;
            parts.map(|parts| assemble(parts, || decode(core, root, &mine), |q, m| received_value(core, q, m))).transpose()
        })
    }

    /// Gathers one slice from every rank at the root (slices may differ in length).
    pub fn gatherv_slice<T: Pod>(&self, root: usize, part: &[T]) -> Result<Option<Vec<Vec<T>>>> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Gatherv, root)?;
            let parts = core.gatherv_bytes(&call, bytemuck::cast_slice(part)).await?;
            parts.map(|parts| assemble(parts, || Ok(part.to_vec()), |q, m| received_vec(core, q, &m))).transpose()
        })
    }

    /// [`gatherv_slice`](Self::gatherv_slice) into a buffer the caller keeps, as with
    /// MPI's receive buffers: on the root, `out` is replaced by every rank's slice
    /// concatenated in rank order (its allocation is reused), and the per-rank element
    /// counts are returned. Other ranks get `None` and `out` is left untouched.
    pub fn gatherv_slice_into<T: Pod>(&self, root: usize, part: &[T], out: &mut Vec<T>) -> Result<Option<Vec<usize>>> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Gatherv, root)?;
            let root = call.sig.root as usize;
            if core.rank() != root {
                core.send(&call, root, bytemuck::cast_slice(part)).await?;
                return Ok(None);
            }
            let firsts = core.firsts_from(&call, (0..core.size()).filter(|&q| q != root)).await?;
            core.gather_into(&call, firsts, part, out, true).await.map(Some)
        })
    }

    /// Sends `parts[q]` from the root to rank `q`; every rank returns its own part. The root
    /// passes `Some` with exactly `size()` parts, the other ranks `None`.
    ///
    /// ```
    /// # let world = chorus_comm::World::single();
    /// let files: Vec<Vec<String>> = vec![vec!["a.csv".into(), "b.csv".into()]; world.size()];
    /// let mine = world.scatterv(0, (world.rank() == 0).then_some(&files[..])).unwrap();
    /// assert_eq!(mine.len(), 2);
    /// ```
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
            match core.scatterv_bytes(&call, refs.as_deref()).await? {
                Some(message) => received_value(core, root, message),
                None => decode(core, root, &encoded.expect("the root encoded its parts")[root]),
            }
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
            match core.scatterv_bytes(&call, refs.as_deref()).await? {
                Some(message) => received_vec(core, root, &message),
                None => to_vec(core, root, refs.expect("the root passed its parts")[root]),
            }
        })
    }

    /// Every rank receives every rank's value, in rank order.
    ///
    /// ```
    /// # let world = chorus_comm::World::single();
    /// let hosts = world.allgatherv(&format!("rank {} here", world.rank())).unwrap();
    /// assert_eq!(hosts.len(), world.size());
    /// ```
    pub fn allgatherv<T: Serialize + DeserializeOwned>(&self, part: &T) -> Result<Vec<T>> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Allgatherv, 0)?;
            let mine = encode(part)?;
            let parts = core.allgatherv_bytes(&call, &mine).await?;
            assemble(parts, || decode(core, core.rank(), &mine), |q, m| received_value(core, q, m))
        })
    }

    /// Every rank receives every rank's slice, in rank order.
    pub fn allgatherv_slice<T: Pod>(&self, part: &[T]) -> Result<Vec<Vec<T>>> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Allgatherv, 0)?;
            let parts = core.allgatherv_bytes(&call, bytemuck::cast_slice(part)).await?;
            assemble(parts, || Ok(part.to_vec()), |q, m| received_vec(core, q, &m))
        })
    }

    /// [`allgatherv_slice`](Self::allgatherv_slice) into a buffer the caller keeps: `out`
    /// is replaced by every rank's slice concatenated in rank order (its allocation is
    /// reused), and the per-rank element counts are returned.
    pub fn allgatherv_slice_into<T: Pod>(&self, part: &[T], out: &mut Vec<T>) -> Result<Vec<usize>> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Allgatherv, 0)?;
            if !core.one_host {
                let parts = core.allgatherv_bytes(&call, bytemuck::cast_slice(part)).await?;
                return concat_parts(core, parts, part, out);
            }
            // On one host every rank sends its part to every other at once, and each part
            // is copied straight into its place (from the sender's memory where it can be).
            let peers = || (0..core.size()).filter(|&q| q != core.rank());
            let sends = futures_util::future::try_join_all(peers().map(|q| core.send(&call, q, bytemuck::cast_slice(part))));
            let gather = async { core.gather_into(&call, core.firsts_from(&call, peers()).await?, part, out, false).await };
            let (sent, counts) = tokio::join!(sends, gather);
            sent?;
            counts
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
            let mine = Bytes::from(encode(&value)?);
            let (call, gen) = begin_flat::<T>(core, CollectiveOp::Allreduce)?;
            let mut combine = |a: Bytes, b: Bytes| encode(&op.combine(decode(core, 0, &a)?, decode(core, 0, &b)?)).map(Bytes::from);
            if let Some(gen) = gen {
                let arrived = core.flat(&call, gen, &mine).await?;
                if let Some(out) = core.flat_combine(&arrived, &mine, &mut combine)? {
                    return decode(core, 0, &out);
                }
            }
            let out = core.allreduce_bytes(&call, mine, &mut combine).await?;
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
            let (call, gen) = begin_flat::<T>(core, CollectiveOp::Allreduce)?;
            let mut combine = |a: Bytes, b: Bytes| combine_slices(core, &op, a, b);
            let bytes: &[u8] = bytemuck::cast_slice(buf);
            if let Some(gen) = gen {
                // Through the host's shared segment: small slices are reduced there, and
                // every rank learns every length, so a mismatch is seen before any data
                // moves. Larger slices then take the point-to-point algorithms below.
                let arrived = core.flat(&call, gen, bytes).await?;
                core.check_same_lengths::<T>(&call, &arrived.lens).await?;
                if let Some(out) = core.flat_combine(&arrived, bytes, &mut combine)? {
                    return copy_into(core, buf, &out);
                }
            }
            if bytes.len() >= SEGMENTED_ALLREDUCE && core.size() > 1 {
                return core.allreduce_segmented(&call, buf, &op).await;
            }
            let mine = Bytes::copy_from_slice(bytes);
            let out = core.allreduce_bytes(&call, mine, &mut combine).await?;
            copy_into(core, buf, &out)
        })
    }

    /// Sends `parts[q]` to rank `q` and returns the part every rank sent to this one.
    ///
    /// ```
    /// # let world = chorus_comm::World::single();
    /// // Route each word to the rank that owns its first letter (a shuffle).
    /// let words = ["apple", "berry", "cherry"];
    /// let mut outgoing = vec![Vec::new(); world.size()];
    /// for w in words {
    ///     outgoing[w.as_bytes()[0] as usize % world.size()].push(w.to_string());
    /// }
    /// let incoming: Vec<Vec<String>> = world.alltoallv(&outgoing).unwrap();
    /// assert_eq!(incoming.concat().len(), 3);
    /// ```
    pub fn alltoallv<T: Serialize + DeserializeOwned>(&self, parts: &[T]) -> Result<Vec<T>> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Alltoallv, 0)?;
            check_parts(core, CollectiveOp::Alltoallv, parts.len())?;
            let encoded = parts.iter().map(encode).collect::<Result<Vec<_>>>()?;
            let refs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
            let got = core.alltoallv_bytes(&call, &refs).await?;
            assemble(got, || decode(core, core.rank(), &encoded[core.rank()]), |q, m| received_value(core, q, m))
        })
    }

    /// [`alltoallv`](Self::alltoallv) for plain numbers.
    pub fn alltoallv_slice<T: Pod, P: AsRef<[T]>>(&self, parts: &[P]) -> Result<Vec<Vec<T>>> {
        self.run(|core| async move {
            let call = begin::<T>(core, CollectiveOp::Alltoallv, 0)?;
            check_parts(core, CollectiveOp::Alltoallv, parts.len())?;
            let refs: Vec<&[u8]> = parts.iter().map(|p| bytemuck::cast_slice(p.as_ref())).collect();
            let got = core.alltoallv_bytes(&call, &refs).await?;
            assemble(got, || to_vec(core, core.rank(), refs[core.rank()]), |q, m| received_vec(core, q, &m))
        })
    }

    /// Sends `value` to rank `dest` with `tag`. Returns once the message is handed to the
    /// operating system; messages between two ranks with the same tag arrive in order.
    /// The receiver may ask for any type with the same serde form (`&str` is sent, `String`
    /// received); one that does not decode, or leaves bytes over, is an error.
    ///
    /// ```
    /// # let world = chorus_comm::World::single();
    /// let next = (world.rank() + 1) % world.size();
    /// let prev = (world.rank() + world.size() - 1) % world.size();
    /// world.send(next, 7, &"token").unwrap();
    /// let token: String = world.recv(prev, 7).unwrap();
    /// assert_eq!(token, "token");
    /// ```
    pub fn send<T: Serialize>(&self, dest: usize, tag: u64, value: &T) -> Result<()> {
        self.run(|core| async move {
            check_rank(core, dest, "send")?;
            core.send_tagged(dest, tag, SERDE_MESSAGE, &encode(value)?).await
        })
    }

    /// Receives the next message with `tag` from rank `src`.
    pub fn recv<T: DeserializeOwned>(&self, src: usize, tag: u64) -> Result<T> {
        self.run(|core| async move {
            check_rank(core, src, "recv")?;
            let message = core.recv_tagged(src, tag, SERDE_MESSAGE, std::any::type_name::<T>()).await?;
            received_value(core, src, message)
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
            let message = core.recv_tagged(src, tag, type_hash::<[T]>(), std::any::type_name::<[T]>()).await?;
            received_vec(core, src, &message)
        })
    }
}

/// Concatenates the parts (this rank's own where `parts` has `None`) into `out`, returning
/// the element count of each.
fn concat_parts<T: Pod>(core: &Core, parts: Vec<Option<Received>>, own: &[T], out: &mut Vec<T>) -> Result<Vec<usize>> {
    let width = std::mem::size_of::<T>().max(1);
    for (q, m) in parts.iter().enumerate() {
        if let Some(m) = m {
            check_width::<T>(core, q, m.total)?;
        }
    }
    let counts: Vec<usize> = parts.iter().map(|m| m.as_ref().map_or(own.len(), |m| m.total / width)).collect();
    out.clear();
    out.reserve(counts.iter().sum());
    for m in &parts {
        match m {
            Some(m) => m.append_to_vec(out),
            None => out.extend_from_slice(own),
        }
    }
    Ok(counts)
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

#[cfg(test)]
mod tests {
    use crate::world::collectives::Sink;
    use super::SliceSink;

    #[test]
    fn a_bcast_size_that_cannot_be_allocated_is_refused_not_an_abort() {
        let mut buf: Vec<u64> = vec![1, 2, 3];
        let mut sink = SliceSink::<u64> { target: Some(&mut buf), fill: None, bad_length: None, unallocatable: None };
        let huge = (isize::MAX as usize / 8) * 8;
        assert!(sink.room(huge).is_none(), "no room is offered for it");
        sink.chunk(huge, bytes::Bytes::from_static(&[0; 8]));
        assert_eq!(sink.unallocatable, Some(huge), "the chunks are dropped and the size is reported");
        assert!(sink.fill.is_none());
    }
}
