//! Messages as they arrive (one or more chunks) and copying them into typed vectors.

use bytes::{Bytes, BytesMut};

/// A message as it arrived: one or more chunks.
#[derive(Default)]
pub(crate) struct Received {
    pub(crate) chunks: Vec<Bytes>,
    pub(crate) total: usize,
}

impl Received {
    /// The message as one buffer (no copy when it came in one chunk).
    pub(crate) fn into_bytes(mut self) -> Bytes {
        if self.chunks.len() == 1 {
            return self.chunks.pop().expect("one chunk");
        }
        let mut out = BytesMut::with_capacity(self.total);
        for c in &self.chunks {
            out.extend_from_slice(c);
        }
        out.freeze()
    }

    /// Replaces the contents of `out` with the message's elements, copying each byte once
    /// and reusing `out`'s allocation. The caller checks that the length is a whole number
    /// of elements.
    pub(crate) fn copy_into_vec<T: bytemuck::Pod>(&self, out: &mut Vec<T>) {
        out.clear();
        self.append_to_vec(out);
    }

    /// Appends the message's elements to `out` (see [`Self::copy_into_vec`]).
    pub(crate) fn append_to_vec<T: bytemuck::Pod>(&self, out: &mut Vec<T>) {
        let mut fill = PodFill::new(out, self.total);
        for c in &self.chunks {
            fill.push(c);
        }
        let complete = fill.finish();
        debug_assert!(complete, "a received message holds `total` bytes");
    }
}

/// Appends `total` bytes, arriving in pieces that may split elements, to a `Vec<T>` of
/// plain numbers without zero-filling it first.
pub(crate) struct PodFill<'a, T> {
    out: &'a mut Vec<T>,
    written: usize,
    total: usize,
}

impl<'a, T: bytemuck::Pod> PodFill<'a, T> {
    /// Makes room for `total` bytes (a whole number of elements, checked by the caller).
    pub(crate) fn new(out: &'a mut Vec<T>, total: usize) -> Self {
        let width = std::mem::size_of::<T>().max(1);
        out.reserve_exact(total / width);
        PodFill { out, written: 0, total: total - total % width }
    }

    /// Copies the next piece (anything beyond `total` is ignored).
    pub(crate) fn push(&mut self, piece: &[u8]) {
        let piece = &piece[..piece.len().min(self.total - self.written)];
        let spare = self.out.spare_capacity_mut();
        // SAFETY: `new` reserved room for total/width elements past the current length, so
        // the spare capacity spans at least `total` bytes; MaybeUninit<T> has T's layout
        // and we only view it as bytes.
        let dst = unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<u8>(), self.total) };
        dst[self.written..self.written + piece.len()].copy_from_slice(piece);
        self.written += piece.len();
    }

    /// The whole room for the `total` bytes, to be filled at once (then
    /// [`Self::mark_filled`]).
    pub(crate) fn room(&mut self) -> &mut [std::mem::MaybeUninit<u8>] {
        let spare = self.out.spare_capacity_mut();
        // SAFETY: as in `push`, the spare capacity spans at least `total` bytes, viewed as
        // possibly uninitialised bytes.
        let room = unsafe { std::slice::from_raw_parts_mut(spare.as_mut_ptr().cast::<std::mem::MaybeUninit<u8>>(), self.total) };
        crate::cma::advise_huge_pages(room);
        room
    }

    /// Records that every byte of [`Self::room`] was written.
    pub(crate) fn mark_filled(&mut self) {
        self.written = self.total;
    }

    /// Makes the written elements part of the vector; false if fewer than `total` bytes
    /// arrived (the vector is then left as it was).
    pub(crate) fn finish(self) -> bool {
        if self.written != self.total {
            return false;
        }
        let width = std::mem::size_of::<T>().max(1);
        let len = self.out.len() + self.total / width;
        // SAFETY: the `total` bytes after the old length were all written by `push`, and
        // every bit pattern is a valid T because T: Pod.
        unsafe { self.out.set_len(len) };
        true
    }
}

