//! Benchmark support shared by the criterion benches in `benches/benches/`.
//!
//! - [`ConnLike`]: a pooled object shaped like the broker's connection state (a bump arena
//!   with its first chunk allocated and two fixed-size buffers), so the pool is measured with
//!   objects whose construction costs what the broker's will.

use starling_pool::Poolable;

/// Bytes of each fixed-size buffer in [`ConnLike`] (a read and a write buffer of 4 KiB, as a
/// connection object that owns its buffers would hold).
pub const BUFFER_BYTES: usize = 4096;
/// Bytes the arena's first chunk is given (an arena of its own per connection).
pub const ARENA_CHUNK_BYTES: usize = 1024;

/// A stand-in for a broker connection object.
pub struct ConnLike {
    /// Connection-lifetime scratch.
    pub arena: bumpalo::Bump,
    /// Read buffer.
    pub read: Box<[u8; BUFFER_BYTES]>,
    /// Write buffer.
    pub write: Box<[u8; BUFFER_BYTES]>,
    /// Bytes used in each buffer.
    pub used: [usize; 2],
}

impl ConnLike {
    /// A fully allocated object.
    pub fn new() -> Self {
        ConnLike {
            arena: bumpalo::Bump::with_capacity(ARENA_CHUNK_BYTES),
            read: Box::new([0; BUFFER_BYTES]),
            write: Box::new([0; BUFFER_BYTES]),
            used: [0; 2],
        }
    }
}

impl Default for ConnLike {
    fn default() -> Self {
        ConnLike::new()
    }
}

impl Poolable for ConnLike {
    fn reset(&mut self) {
        self.arena.reset();
        self.used = [0; 2];
    }
}
