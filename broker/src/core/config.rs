//! The limits the sans-IO core enforces. Every limit has its unit in its name.

use starling_pool::PoolConfig;

/// Default largest packet accepted, fixed header included (256 KiB; Mosquitto has no default
/// limit, EMQX uses 1 MiB).
pub const DEFAULT_MAX_PACKET_SIZE_BYTES: usize = 256 * 1024;
/// Default time a new connection has to send its CONNECT.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Default cap on the keep-alive a client may ask for (0 = no cap). 3.1.1 has no way to tell
/// the client, so a larger request is reduced silently.
pub const DEFAULT_MAX_KEEP_ALIVE_SECS: u16 = 0;
/// Default QoS 1/2 messages in flight toward one client (Mosquitto's default is 20).
pub const DEFAULT_MAX_INFLIGHT_MESSAGES: usize = 20;
/// Default messages queued for one client beyond its in-flight window (Mosquitto: 1000).
pub const DEFAULT_MAX_QUEUED_MESSAGES: usize = 1000;
/// Default connected clients across all event loops.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1_000_000;
/// Default subscriptions one client may hold.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_CLIENT: usize = 1024;
/// Default bytes of encoded output one connection may have waiting for the socket before
/// further messages go to its queue (QoS 1/2) or are dropped (QoS 0).
pub const DEFAULT_MAX_OUTPUT_BUFFER_BYTES: usize = 256 * 1024;
/// Default size of the fixed buffers a loop lends to connections with bytes pending.
pub const DEFAULT_BUFFER_BYTES: usize = 4096;
/// Keep-alive is enforced at one and a half times the client's interval (MQTT-3.1.2-24).
pub const KEEP_ALIVE_GRACE_PERCENT: u64 = 150;

/// Everything the core needs to know; the binary fills it from flags (and later a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// Largest packet accepted; a larger one closes the connection.
    pub max_packet_size_bytes: usize,
    /// A connection that has not sent CONNECT by then is closed.
    pub connect_timeout_ms: u64,
    /// Cap on the keep-alive interval (0 = none).
    pub max_keep_alive_secs: u16,
    /// QoS 1/2 messages in flight toward one client.
    pub max_inflight_messages: usize,
    /// Messages waiting for one client beyond the in-flight window.
    pub max_queued_messages: usize,
    /// Connected clients across all loops; the next CONNECT gets 0x03.
    pub max_connections: usize,
    /// Subscriptions one client may hold; more get 0x80 in SUBACK.
    pub max_subscriptions_per_client: usize,
    /// Output bytes one connection may have waiting for its socket.
    pub max_output_buffer_bytes: usize,
    /// Size of one lent buffer.
    pub buffer_bytes: usize,
    /// The per-loop connection pool.
    pub pool: PoolConfig,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            max_packet_size_bytes: DEFAULT_MAX_PACKET_SIZE_BYTES,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            max_keep_alive_secs: DEFAULT_MAX_KEEP_ALIVE_SECS,
            max_inflight_messages: DEFAULT_MAX_INFLIGHT_MESSAGES,
            max_queued_messages: DEFAULT_MAX_QUEUED_MESSAGES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_subscriptions_per_client: DEFAULT_MAX_SUBSCRIPTIONS_PER_CLIENT,
            max_output_buffer_bytes: DEFAULT_MAX_OUTPUT_BUFFER_BYTES,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            pool: PoolConfig::default(),
        }
    }
}

impl CoreConfig {
    /// The keep-alive deadline interval in ms for a client asking `keep_alive_secs`
    /// (after the cap), or `None` when keep-alive is off.
    pub fn keep_alive_timeout_ms(&self, keep_alive_secs: u16) -> Option<u64> {
        let secs = match (keep_alive_secs, self.max_keep_alive_secs) {
            (0, _) => return None,
            (asked, 0) => asked,
            (asked, cap) => asked.min(cap),
        };
        Some(u64::from(secs) * 1000 * KEEP_ALIVE_GRACE_PERCENT / 100)
    }
}
