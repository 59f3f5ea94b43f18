//! Pool configuration: the four numbers of the growth rule, the limits, and the presets.

use std::fmt;

/// Objects constructed at start-up by default.
pub const DEFAULT_INITIAL_OBJECTS: usize = 1024;
/// Growth triggers when `active >= preheated * threshold / 100`.
pub const DEFAULT_GROWTH_THRESHOLD_PERCENT: u32 = 80;
/// Each growth step multiplies the preheated size by this (150 = ×1.5).
pub const DEFAULT_GROWTH_FACTOR_PERCENT: u32 = 150;
/// Preheating stops at this many objects.
pub const DEFAULT_MAX_PREHEATED_OBJECTS: usize = 100_000;
/// The hard limit on live objects, i.e. connections.
pub const DEFAULT_MAX_LIVE_OBJECTS: usize = 1_000_000;
/// Available objects idle longer than this are freed by [`crate::Pool::sweep`] (5 min).
pub const DEFAULT_IDLE_TTL_MS: u64 = 5 * 60 * 1000;
/// Objects one [`crate::Pool::preheat_step`] constructs at most by default.
pub const DEFAULT_PREHEAT_BUDGET_OBJECTS: usize = 256;

/// Everything that shapes a [`crate::Pool`]. Build one with [`PoolConfig::default`] or a
/// preset, change fields, and let [`PoolConfig::validate`] (called by `Pool::new`) check it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Objects constructed by `Pool::new`, before the first acquisition.
    pub initial_objects: usize,
    /// Growth triggers on an acquisition that leaves `active >= preheated * this / 100`.
    pub growth_threshold_percent: u32,
    /// The next preheated size is `preheated * this / 100` (integer arithmetic), capped.
    pub growth_factor_percent: u32,
    /// Preheating never goes past this many objects.
    pub max_preheated_objects: usize,
    /// At most this many objects are active at once; one more acquisition is refused.
    pub max_live_objects: usize,
    /// An available object idle for at least this long may be freed by a sweep.
    pub idle_ttl_ms: u64,
    /// A sweep never takes the pool below this many live objects (rounded up to the growth
    /// ladder). `None` means `initial_objects`.
    pub shrink_floor_objects: Option<usize>,
    /// The most objects one `preheat_step` constructs.
    pub preheat_budget_objects: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            initial_objects: DEFAULT_INITIAL_OBJECTS,
            growth_threshold_percent: DEFAULT_GROWTH_THRESHOLD_PERCENT,
            growth_factor_percent: DEFAULT_GROWTH_FACTOR_PERCENT,
            max_preheated_objects: DEFAULT_MAX_PREHEATED_OBJECTS,
            max_live_objects: DEFAULT_MAX_LIVE_OBJECTS,
            idle_ttl_ms: DEFAULT_IDLE_TTL_MS,
            shrink_floor_objects: None,
            preheat_budget_objects: DEFAULT_PREHEAT_BUDGET_OBJECTS,
        }
    }
}

/// Three deployment sizes: objects built at start, preheated at most, and live at most
/// (the connections one pool serves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// 256 initial, 10 000 preheated at most, 10 000 connections.
    Small,
    /// 2 048 initial, 100 000 preheated at most, 100 000 connections.
    Medium,
    /// 10 000 initial, 100 000 preheated at most, 1 000 000 connections.
    Large,
}

impl PoolConfig {
    /// The configuration of a preset; other fields keep their defaults.
    pub fn preset(preset: Preset) -> Self {
        let (initial, max_preheated, max_live) = match preset {
            Preset::Small => (256, 10_000, 10_000),
            Preset::Medium => (2_048, 100_000, 100_000),
            Preset::Large => (10_000, 100_000, 1_000_000),
        };
        PoolConfig {
            initial_objects: initial,
            max_preheated_objects: max_preheated,
            max_live_objects: max_live,
            ..PoolConfig::default()
        }
    }

    /// The live-object floor a sweep keeps.
    pub fn shrink_floor(&self) -> usize {
        self.shrink_floor_objects.unwrap_or(self.initial_objects)
    }

    /// Checks every field and every relation between fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use ConfigError::*;
        if self.initial_objects == 0 {
            return Err(InitialZero);
        }
        if self.initial_objects > self.max_preheated_objects {
            return Err(InitialAboveCap {
                initial_objects: self.initial_objects,
                max_preheated_objects: self.max_preheated_objects,
            });
        }
        if !(1..=100).contains(&self.growth_threshold_percent) {
            return Err(ThresholdOutOfRange(self.growth_threshold_percent));
        }
        if self.growth_factor_percent <= 100 {
            return Err(FactorNotAboveOne(self.growth_factor_percent));
        }
        if self.max_preheated_objects > self.max_live_objects {
            return Err(CapAboveMaxLive {
                max_preheated_objects: self.max_preheated_objects,
                max_live_objects: self.max_live_objects,
            });
        }
        if self.max_live_objects > u32::MAX as usize {
            return Err(MaxLiveTooLarge(self.max_live_objects));
        }
        if self.shrink_floor() > self.max_preheated_objects {
            return Err(FloorAboveCap {
                shrink_floor_objects: self.shrink_floor(),
                max_preheated_objects: self.max_preheated_objects,
            });
        }
        if self.preheat_budget_objects == 0 {
            return Err(BudgetZero);
        }
        if self.idle_ttl_ms == 0 {
            return Err(IdleTtlZero);
        }
        Ok(())
    }
}

/// Why a [`PoolConfig`] was refused. The message names the field and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `initial_objects` is 0.
    InitialZero,
    /// `initial_objects` is above `max_preheated_objects`.
    InitialAboveCap {
        /// The value given.
        initial_objects: usize,
        /// The cap it must not exceed.
        max_preheated_objects: usize,
    },
    /// `growth_threshold_percent` is outside 1..=100.
    ThresholdOutOfRange(u32),
    /// `growth_factor_percent` is not above 100 (the pool would never grow).
    FactorNotAboveOne(u32),
    /// `max_preheated_objects` is above `max_live_objects`.
    CapAboveMaxLive {
        /// The value given.
        max_preheated_objects: usize,
        /// The hard limit it must not exceed.
        max_live_objects: usize,
    },
    /// `max_live_objects` does not fit the 32-bit key index.
    MaxLiveTooLarge(usize),
    /// The shrink floor is above `max_preheated_objects`.
    FloorAboveCap {
        /// The floor in effect.
        shrink_floor_objects: usize,
        /// The cap it must not exceed.
        max_preheated_objects: usize,
    },
    /// `preheat_budget_objects` is 0 (preheating would never progress).
    BudgetZero,
    /// `idle_ttl_ms` is 0 (every sweep would free everything above the floor).
    IdleTtlZero,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ConfigError::*;
        match self {
            InitialZero => write!(f, "initial_objects must be at least 1"),
            InitialAboveCap {
                initial_objects,
                max_preheated_objects,
            } => write!(
                f,
                "initial_objects ({initial_objects}) must not exceed max_preheated_objects ({max_preheated_objects})"
            ),
            ThresholdOutOfRange(v) => {
                write!(f, "growth_threshold_percent ({v}) must be within 1..=100")
            }
            FactorNotAboveOne(v) => write!(
                f,
                "growth_factor_percent ({v}) must be above 100 (a factor above 1)"
            ),
            CapAboveMaxLive {
                max_preheated_objects,
                max_live_objects,
            } => write!(
                f,
                "max_preheated_objects ({max_preheated_objects}) must not exceed max_live_objects ({max_live_objects})"
            ),
            MaxLiveTooLarge(v) => write!(
                f,
                "max_live_objects ({v}) must not exceed {} (the key index is 32-bit)",
                u32::MAX
            ),
            FloorAboveCap {
                shrink_floor_objects,
                max_preheated_objects,
            } => write!(
                f,
                "shrink_floor_objects ({shrink_floor_objects}) must not exceed max_preheated_objects ({max_preheated_objects})"
            ),
            BudgetZero => write!(f, "preheat_budget_objects must be at least 1"),
            IdleTtlZero => write!(f, "idle_ttl_ms must be at least 1"),
        }
    }
}

impl std::error::Error for ConfigError {}
