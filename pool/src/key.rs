//! Generation-checked handles.

use std::fmt;

/// A handle to an active object. It stays valid until the object is released; after that
/// every use of it is an error ([`StaleKey`]), even when the slot has been handed out again.
///
/// Generations come from one pool-wide 32-bit counter, bumped on every acquisition, so a
/// stale key could only alias a new object after exactly 2^32 acquisitions that happen to
/// land on the same slot while the stale key is still held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl Key {
    /// The slot index (stable while the object is active; useful as a compact id, e.g. a
    /// mio token).
    pub fn index(self) -> u32 {
        self.index
    }

    /// The generation the key was issued with.
    pub fn generation(self) -> u32 {
        self.generation
    }

    /// Packs the key into a `u64` (index in the low half), e.g. to carry it in a mio token.
    pub fn to_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// The inverse of [`Key::to_u64`]. A value that was never a key is just a stale key.
    pub fn from_u64(value: u64) -> Key {
        Key {
            index: value as u32,
            generation: (value >> 32) as u32,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}v{}", self.index, self.generation)
    }
}

/// A key that no longer names an active object: released, freed, or never issued here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StaleKey(pub Key);

impl fmt::Display for StaleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stale pool key {}", self.0)
    }
}

impl std::error::Error for StaleKey {}

/// Why an acquisition failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcquireError {
    /// `max_live_objects` objects are already active: the caller refuses the connection.
    AtCapacity {
        /// The limit.
        max_live_objects: usize,
    },
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcquireError::AtCapacity { max_live_objects } => {
                write!(f, "pool at capacity ({max_live_objects} objects active)")
            }
        }
    }
}

impl std::error::Error for AcquireError {}
