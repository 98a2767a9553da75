//! Receive buffers for large frames, reused so that streaming a big message does not
//! page-fault fresh memory for every chunk (a fresh 4 MiB buffer costs a thousand page
//! faults, and the allocator hands it back to the kernel when it is freed).

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::frame;

/// Frames at least this large are read into pooled buffers.
pub(crate) const POOLED_FRAME: usize = 64 << 10;
/// Pooled buffers kept for reuse per world (at most 32 MiB retained; 16 measured no faster).
const POOL_SIZE: usize = 8;

/// Buffers of [`frame::MAX_FRAME`] bytes, each taken for one frame and given back when
/// the last `Bytes` of that frame is dropped.
#[derive(Default)]
pub(crate) struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

/// A pooled buffer holding one frame; it goes back to the pool when the last `Bytes`
/// pointing into it is dropped.
struct PooledFrame {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for PooledFrame {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for PooledFrame {
    fn drop(&mut self) {
        let mut free = self.pool.free.lock().expect("pool lock");
        if free.len() < POOL_SIZE {
            free.push(std::mem::take(&mut self.buf));
        }
    }
}

impl BufferPool {
    /// A buffer of [`frame::MAX_FRAME`] bytes (their contents are whatever the last frame
    /// left).
    pub(crate) fn take(&self) -> Vec<u8> {
        self.free.lock().expect("pool lock").pop().unwrap_or_else(|| vec![0; frame::MAX_FRAME])
    }

    /// The first `len` bytes of `buf`, a buffer from [`BufferPool::take`], as a frame that
    /// gives the buffer back when it goes.
    pub(crate) fn frame(self: &Arc<Self>, buf: Vec<u8>, len: usize) -> Bytes {
        debug_assert!(len <= buf.len());
        Bytes::from_owner(PooledFrame { buf, len, pool: self.clone() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooled_buffers_are_reused_once_released() {
        let pool = Arc::new(BufferPool::default());
        let buf = pool.take();
        let ptr = buf.as_ptr();
        drop(pool.frame(buf, 10));
        let again = pool.take();
        assert_eq!(again.as_ptr(), ptr);
    }
}
