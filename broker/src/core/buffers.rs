//! The per-loop pool of fixed-size buffers lent to connections only while they have bytes
//! pending (a partial packet read, or output the socket has not taken yet). An idle
//! connection holds no buffer at all, and the pool does not keep what a burst left idle:
//! [`BufferPool::trim_idle`] frees the buffers no one took since the previous trim.

/// Lends `Vec<u8>`s of one fixed capacity. A buffer that grew (a packet larger than the fixed
/// size) is dropped on return instead of kept, so the pool's memory stays predictable.
pub struct BufferPool {
    /// Idle buffers, a stack: the most recently returned is lent first, so the bottom
    /// entries are the ones no one needed lately.
    free: Vec<Vec<u8>>,
    buffer_bytes: usize,
    max_free: usize,
    lent: usize,
    /// The fewest idle buffers since the last trim: the entries below it in `free` were
    /// not taken once since then.
    // Invariant: `fewest_idle <= free.len()`.
    fewest_idle: usize,
    /// Capacity of the buffers freed since [`BufferPool::take_released_bytes`] was last
    /// called.
    released_bytes: usize,
}

/// How many returned buffers a loop keeps for reuse by default.
pub const DEFAULT_MAX_FREE_BUFFERS: usize = 1024;

impl BufferPool {
    /// A pool of `buffer_bytes` buffers that keeps at most `max_free` of them idle, with
    /// `preheat` of them allocated up front.
    pub fn new(buffer_bytes: usize, max_free: usize, preheat: usize) -> Self {
        let free: Vec<Vec<u8>> = (0..preheat.min(max_free))
            .map(|_| Vec::with_capacity(buffer_bytes))
            .collect();
        BufferPool {
            fewest_idle: free.len(),
            free,
            buffer_bytes,
            max_free,
            lent: 0,
            released_bytes: 0,
        }
    }

    /// An empty buffer with at least the fixed capacity.
    pub fn take(&mut self) -> Vec<u8> {
        self.lent += 1;
        let buffer = self.free.pop();
        self.fewest_idle = self.fewest_idle.min(self.free.len());
        buffer.unwrap_or_else(|| Vec::with_capacity(self.buffer_bytes))
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
        } else {
            self.released_bytes += buffer.capacity();
        }
    }

    /// Frees the idle buffers that no one took since the previous call (the loop calls it
    /// once a second): what stays is what the busiest moment of that interval used. Returns
    /// the bytes freed.
    pub fn trim_idle(&mut self) -> usize {
        let unused = self.fewest_idle.min(self.free.len());
        self.free.drain(..unused);
        if self.free.capacity() > 2 * self.free.len() {
            self.free.shrink_to_fit();
        }
        self.fewest_idle = self.free.len();
        let bytes = unused * self.buffer_bytes;
        self.released_bytes += bytes;
        bytes
    }

    /// Bytes of buffers freed (trimmed, or dropped on return because they grew) since the
    /// previous call.
    pub fn take_released_bytes(&mut self) -> usize {
        std::mem::take(&mut self.released_bytes)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_left_idle_by_a_burst_are_freed_at_the_next_trim() {
        let mut pool = BufferPool::new(64, 1024, 0);
        let burst: Vec<Vec<u8>> = (0..100).map(|_| pool.take()).collect();
        for buffer in burst {
            pool.give(buffer);
        }
        assert_eq!(pool.idle(), 100);
        // The burst was within this interval: its buffers were all in use at once.
        assert_eq!(pool.trim_idle(), 0);
        assert_eq!(pool.idle(), 100);
        // Light traffic in the next interval uses two of them at a time.
        for _ in 0..50 {
            let (a, b) = (pool.take(), pool.take());
            pool.give(a);
            pool.give(b);
        }
        assert_eq!(
            pool.trim_idle(),
            98 * 64,
            "98 stayed idle the whole interval"
        );
        assert_eq!(pool.idle(), 2);
        assert_eq!(pool.take_released_bytes(), 98 * 64);
        assert_eq!(pool.take_released_bytes(), 0);
        // Nothing taken for a whole interval: nothing kept.
        assert_eq!(pool.trim_idle(), 2 * 64);
        assert_eq!(pool.idle(), 0);
    }

    #[test]
    fn a_grown_buffer_is_dropped_and_counted() {
        let mut pool = BufferPool::new(64, 1024, 0);
        let mut buffer = pool.take();
        buffer.extend_from_slice(&[0; 1000]);
        let capacity = buffer.capacity();
        pool.give(buffer);
        assert_eq!(pool.idle(), 0);
        assert_eq!(pool.lent(), 0);
        assert_eq!(pool.take_released_bytes(), capacity);
    }
}
