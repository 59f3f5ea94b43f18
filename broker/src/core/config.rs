//! The limits the sans-IO core enforces. Every limit has its unit in its name.

use starling_pool::PoolConfig;

/// Default largest packet accepted, fixed header included (256 KiB; Mosquitto has no default
/// limit, EMQX uses 1 MiB).
pub const DEFAULT_MAX_PACKET_SIZE_BYTES: usize = 256 * 1024;
/// Default time a new connection has to send its CONNECT.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;
/// Default time a packet begun after CONNECT has to arrive whole: a 256 KiB packet (the
/// default `max_packet_size_bytes`) at about 4.4 KB/s.
pub const DEFAULT_PARTIAL_PACKET_TIMEOUT_MS: u64 = 60_000;
/// Default cap on the keep-alive a client may ask for (0 = no cap). An MQTT 5 client asking
/// for more, or for 0, is told the cap as Server Keep Alive; 3.x has no way to tell the
/// client, so such a 3.x CONNECT is refused with CONNACK 0x02.
pub const DEFAULT_MAX_KEEP_ALIVE_SECS: u16 = 0;
/// Default QoS 1/2 messages in flight toward one client (Mosquitto's default is 20).
pub const DEFAULT_MAX_INFLIGHT_MESSAGES: usize = 20;
/// Default messages queued for one client beyond its in-flight window (Mosquitto: 1000).
pub const DEFAULT_MAX_QUEUED_MESSAGES: usize = 1000;
/// Default bytes of messages (topic + payload) queued for one client: 1 000 messages of
/// 16 KiB, so a slow client cannot pin the default queue's worst case (1 000 × 256 KiB).
pub const DEFAULT_MAX_QUEUED_BYTES: usize = 16 * 1024 * 1024;
/// Default longest topic name or filter, in bytes: what MQTT can encode.
pub const DEFAULT_MAX_TOPIC_LENGTH_BYTES: usize = crate::topic::MAX_TOPIC_LENGTH_BYTES;
/// Default deepest topic name or filter, in levels: the topic index's own ceiling.
pub const DEFAULT_MAX_TOPIC_LEVELS: usize = crate::topic::matching::MAX_TOPIC_LEVELS;
/// Default connected clients across all event loops.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1_000_000;
/// Default subscriptions one client may hold.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_CLIENT: usize = 1024;
/// Default bytes of encoded output one connection may have waiting for the socket before
/// further messages go to its queue (QoS 1/2) or are dropped (QoS 0).
pub const DEFAULT_MAX_OUTPUT_BUFFER_BYTES: usize = 256 * 1024;
/// Default size of the fixed buffers a loop lends to connections with bytes pending.
pub const DEFAULT_BUFFER_BYTES: usize = 4096;
/// Topic aliases a client may map on one connection (MQTT 5 Topic Alias Maximum).
pub const DEFAULT_TOPIC_ALIAS_MAXIMUM: u16 = 10;
/// QoS 1/2 PUBLISHes a client may have unacknowledged toward the broker.
pub const DEFAULT_RECEIVE_MAXIMUM: u16 = 1024;
/// Default longest time a publisher is held back for a congested subscriber before that
/// subscriber's queue limit applies instead (`core::flow`).
pub const DEFAULT_MAX_PUBLISHER_HOLD_MS: u64 = 1000;
/// Default time a connection the broker closed after a last packet (a refusing CONNACK, a
/// DISCONNECT with a reason) lingers: its input is read and discarded until EOF, so that a
/// client still writing gets that packet rather than a reset that destroys it.
pub const DEFAULT_CLOSE_LINGER_TIMEOUT_MS: u64 = 2_000;
/// Default most input discarded while lingering before the socket is closed anyway.
pub const DEFAULT_CLOSE_LINGER_MAX_BYTES: usize = 1024 * 1024;
/// Default topic bytes one MQTT 5 connection's Topic Alias table may hold (each direction):
/// the default 10 aliases of 6.5 KB topics, while 300 connections with 10 aliases of 60 KB
/// each would otherwise pin 180 MB.
pub const DEFAULT_MAX_TOPIC_ALIAS_BYTES: usize = 64 * 1024;
/// Default longest client identifier, in bytes (VerneMQ's default is 100, AWS IoT's 128;
/// a 64 KiB id would be pinned by the session for as long as it lives).
pub const DEFAULT_MAX_CLIENT_ID_LENGTH_BYTES: usize = 256;
/// The least `max_client_id_length_bytes` may be: a server must accept client ids of 1 to
/// 23 bytes (MQTT-3.1.3-5).
pub const MIN_CLIENT_ID_LENGTH_BYTES: usize = 23;
/// Keep-alive is enforced at one and a half times the client's interval (MQTT-3.1.2-24).
pub const KEEP_ALIVE_GRACE_PERCENT: u64 = 150;

/// Everything the core needs to know; the binary fills it from flags (and later a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// Largest packet accepted; a larger one closes the connection.
    pub max_packet_size_bytes: usize,
    /// A connection that has not sent a whole CONNECT by then (counted from accept, however
    /// many bytes trickle in) is closed.
    pub connect_timeout_ms: u64,
    /// A packet begun after CONNECT that is not whole by then (counted from the read that
    /// brought its first bytes) closes the connection. While a packet is partial this
    /// replaces the keep-alive deadline: the client is evidently there, but must finish.
    pub partial_packet_timeout_ms: u64,
    /// Cap on the keep-alive interval (0 = none); 3.x CONNECTs over it (or asking for 0)
    /// are refused.
    pub max_keep_alive_secs: u16,
    /// QoS 1/2 messages in flight toward one client.
    pub max_inflight_messages: usize,
    /// Messages waiting for one client beyond the in-flight window.
    pub max_queued_messages: usize,
    /// Bytes of messages (topic + payload) waiting for one client (0 = no byte limit).
    pub max_queued_bytes: usize,
    /// Connected clients across all loops; the next CONNECT gets 0x03.
    pub max_connections: usize,
    /// Subscriptions one client may hold; more get 0x80 in SUBACK.
    pub max_subscriptions_per_client: usize,
    /// Longest topic name or filter in bytes: a PUBLISH (or will) with a longer topic closes
    /// the connection, a longer filter gets 0x80 in SUBACK.
    pub max_topic_length_bytes: usize,
    /// Deepest topic name or filter in levels, refused like a too-long one.
    pub max_topic_levels: usize,
    /// Output bytes one connection may have waiting for its socket.
    pub max_output_buffer_bytes: usize,
    /// MQTT 5 Topic Alias Maximum announced to clients (0: clients may not use aliases).
    pub topic_alias_maximum: u16,
    /// Receive Maximum: QoS 1/2 PUBLISHes a client may have unacknowledged toward us (in
    /// practice QoS 2 ones awaiting PUBREL: QoS 1 is acknowledged at once).
    pub receive_maximum: u16,
    /// Longest time a publisher is held back (not read) for a congested subscriber; after it
    /// the subscriber's queue limit applies and what does not fit is dropped (counted).
    pub max_publisher_hold_ms: u64,
    /// PUBLISH packets one client may send per second, with a burst of one second's worth
    /// (0 = unlimited); a client over it is not read until it is within the rate again.
    pub max_publish_rate_messages_per_sec: u64,
    /// PUBLISH bytes (whole packets) one client may send per second, likewise (0 = unlimited).
    pub max_publish_rate_bytes_per_sec: u64,
    /// Topic bytes one MQTT 5 connection's Topic Alias table may hold (0: no byte limit,
    /// only `topic_alias_maximum`): a client setting an alias past it is disconnected with
    /// 0x97 Quota exceeded; the broker's own aliases toward the client stay within it too.
    pub max_topic_alias_bytes: usize,
    /// Longest client identifier in bytes: a longer one is refused with CONNACK 0x85
    /// (3.1.1: 0x02).
    pub max_client_id_length_bytes: usize,
    /// Size of one lent buffer.
    pub buffer_bytes: usize,
    /// How long the driver keeps a closed connection lingering after the broker's last
    /// packet to it, discarding its input until EOF (0: closed at once). A lingering socket
    /// holds no pool object and no connection slot.
    pub close_linger_timeout_ms: u64,
    /// Most input a lingering connection may send before it is closed anyway (0: no
    /// lingering).
    pub close_linger_max_bytes: usize,
    /// The per-loop connection pool.
    pub pool: PoolConfig,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            max_packet_size_bytes: DEFAULT_MAX_PACKET_SIZE_BYTES,
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            partial_packet_timeout_ms: DEFAULT_PARTIAL_PACKET_TIMEOUT_MS,
            max_keep_alive_secs: DEFAULT_MAX_KEEP_ALIVE_SECS,
            max_inflight_messages: DEFAULT_MAX_INFLIGHT_MESSAGES,
            max_queued_messages: DEFAULT_MAX_QUEUED_MESSAGES,
            max_queued_bytes: DEFAULT_MAX_QUEUED_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_subscriptions_per_client: DEFAULT_MAX_SUBSCRIPTIONS_PER_CLIENT,
            max_topic_length_bytes: DEFAULT_MAX_TOPIC_LENGTH_BYTES,
            max_topic_levels: DEFAULT_MAX_TOPIC_LEVELS,
            max_output_buffer_bytes: DEFAULT_MAX_OUTPUT_BUFFER_BYTES,
            topic_alias_maximum: DEFAULT_TOPIC_ALIAS_MAXIMUM,
            receive_maximum: DEFAULT_RECEIVE_MAXIMUM,
            max_publisher_hold_ms: DEFAULT_MAX_PUBLISHER_HOLD_MS,
            max_publish_rate_messages_per_sec: 0,
            max_publish_rate_bytes_per_sec: 0,
            max_topic_alias_bytes: DEFAULT_MAX_TOPIC_ALIAS_BYTES,
            max_client_id_length_bytes: DEFAULT_MAX_CLIENT_ID_LENGTH_BYTES,
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            close_linger_timeout_ms: DEFAULT_CLOSE_LINGER_TIMEOUT_MS,
            close_linger_max_bytes: DEFAULT_CLOSE_LINGER_MAX_BYTES,
            pool: PoolConfig::default(),
        }
    }
}

impl CoreConfig {
    /// Why `topic` (a name or a filter) is over the topic limits, or `None` if it is within.
    pub fn topic_refusal(&self, topic: &str) -> Option<TopicRefusal> {
        if topic.len() > self.max_topic_length_bytes {
            return Some(TopicRefusal::Length);
        }
        if crate::topic::matching::level_count(topic) > self.max_topic_levels {
            return Some(TopicRefusal::Levels);
        }
        None
    }

    /// Whether a Topic Alias table holding `bytes` of topics is within
    /// `max_topic_alias_bytes`.
    pub fn topic_aliases_fit(&self, bytes: usize) -> bool {
        self.max_topic_alias_bytes == 0 || bytes <= self.max_topic_alias_bytes
    }

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

/// Which topic limit a topic crosses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicRefusal {
    /// Longer than `max_topic_length_bytes`.
    Length,
    /// Deeper than `max_topic_levels`.
    Levels,
}

impl std::fmt::Display for TopicRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TopicRefusal::Length => "max_topic_length_bytes",
            TopicRefusal::Levels => "max_topic_levels",
        })
    }
}
