//! The per-loop pool of fixed-size buffers lent to connections only while they have bytes
//! pending (a partial packet read, or output the socket has not taken yet). An idle
//! connection holds no buffer at all.

/// Lends `Vec<u8>`s of one fixed capacity. A buffer that grew (a packet larger than the fixed
/// size) is dropped on return instead of kept, so the pool's memory stays predictable.
pub struct BufferPool {
    free: Vec<Vec<u8>>,
    buffer_bytes: usize,
    max_free: usize,
    lent: usize,
}

/// How many returned buffers a loop keeps for reuse by default.
pub const DEFAULT_MAX_FREE_BUFFERS: usize = 1024;

impl BufferPool {
    /// A pool of `buffer_bytes` buffers that keeps at most `max_free` of them idle, with
    /// `preheat` of them allocated up front.
    pub fn new(buffer_bytes: usize, max_free: usize, preheat: usize) -> Self {
        let free = (0..preheat.min(max_free))
            .map(|_| Vec::with_capacity(buffer_bytes))
            .collect();
        BufferPool {
            free,
            buffer_bytes,
            max_free,
            lent: 0,
        }
    }

    /// An empty buffer with at least the fixed capacity.
    pub fn take(&mut self) -> Vec<u8> {
        self.lent += 1;
        self.free
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.buffer_bytes))
    }

    /// Gives a buffer back. Buffers with no capacity (never lent) are ignored.
    pub fn give(&mut self, mut buffer: Vec<u8>) {
        if buffer.capacity() == 0 {
            return;
        }
        self.lent = self.lent.saturating_sub(1);
        if buffer.capacity() == self.buffer_bytes && self.free.len() < self.max_free {
            buffer.clear();
            self.free.push(buffer);
        }
    }

    /// Buffers currently lent out.
    pub fn lent(&self) -> usize {
        self.lent
    }

    /// Buffers idle in the pool.
    pub fn idle(&self) -> usize {
        self.free.len()
    }

    /// The fixed buffer size.
    pub fn buffer_bytes(&self) -> usize {
        self.buffer_bytes
    }
}
