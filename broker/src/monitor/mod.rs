//! Seeing the broker from outside: Prometheus metrics and health over HTTP, and `$SYS`
//! topics.
//!
//! Nothing here runs on an event loop's hot path. The loops keep plain per-loop counters
//! (`core::ShardStats`, the pool's `PoolStats`); when a scrape, a health check or a `$SYS`
//! round needs numbers, a [`Probe`] asks every loop through its mailbox for a
//! [`LoopSnapshot`] and sums them ([`Snapshot`]).
//!
//! - [`http`]: the HTTP listener (`GET /metrics`, `GET /healthz`) on its own thread.
//! - [`prometheus`]: the snapshot as Prometheus text, through the `metrics` crate and
//!   `metrics-exporter-prometheus`' recorder (no tokio, no hyper).
//! - [`health`]: the four-state health and its JSON, with status changes logged.
//! - [`sys`]: the `$SYS/broker/...` messages (Mosquitto's names where it has one) and the
//!   thread that publishes them every `sys_interval_secs` and watches health every second.
//! - [`rss`]: the process's resident and peak memory.
//! - [`token`]: the bearer token `/metrics` asks for when `monitoring.token_file` is set.

pub mod health;
pub mod http;
pub mod listeners;
pub mod prometheus;
pub mod rss;
pub mod store;
pub mod sys;
pub mod token;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use starling_pool::PoolStats;

use crate::core::observe::SessionCounts;
use crate::core::{ShardStats, Shared};
use crate::server::control::Control;
use crate::server::mailbox::{Inbound, Peers};

/// How long a probe waits for the loops to answer.
pub const PROBE_TIMEOUT_MS: u64 = 1000;
/// A loop that has not gone round for this long is stuck, and the broker unavailable. Five
/// probe timeouts (and health-check intervals): a loop merely late to answer a probe, as on a
/// busy host, is reported as late, not as down.
pub const LOOP_STUCK_WINDOW_MS: u64 = 5 * PROBE_TIMEOUT_MS;
/// Default address of the metrics and health endpoint: loopback only.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";
/// Default `$SYS` interval (Mosquitto's `sys_interval` default is 10 s).
pub const DEFAULT_SYS_INTERVAL_SECS: u64 = 10;

/// What the monitoring threads are configured with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorSettings {
    /// Where `/metrics` and `/healthz` are served (`None`: not served).
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds between `$SYS` rounds (0: no `$SYS` messages).
    pub sys_interval_secs: u64,
    /// The bearer token `/metrics` asks for (`None`: served to anyone who reaches it).
    pub metrics_token: Option<token::MetricsToken>,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            metrics_listen: DEFAULT_METRICS_LISTEN.parse().ok(),
            sys_interval_secs: DEFAULT_SYS_INTERVAL_SECS,
            metrics_token: None,
        }
    }
}

/// One loop's numbers at one moment.
#[derive(Debug, Clone, Default)]
pub struct LoopSnapshot {
    /// The loop.
    pub loop_index: usize,
    /// Its counters.
    pub stats: ShardStats,
    /// Its connection pool.
    pub pool: PoolStats,
    /// Its sessions and the messages they hold.
    pub sessions: SessionCounts,
    /// Subscriptions in its index.
    pub subscriptions: usize,
    /// Buffers lent to connections.
    pub buffers_lent: usize,
    /// Buffers idle in the loop's buffer pool.
    pub buffers_idle: usize,
    /// Size of one buffer.
    pub buffer_bytes: usize,
    /// Sockets open on the loop (connected or not yet).
    pub sockets: usize,
    /// Sockets the loop holds outside its pool (refused newcomers, lingering closes).
    pub outside: crate::server::outside::OutsideStats,
    /// The global connection limit in force.
    pub max_connections: usize,
    /// Retained messages (shared, the same in every loop's snapshot).
    pub retained: usize,
}

/// Every loop's numbers and the process's.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The loops that answered, by index.
    pub loops: Vec<LoopSnapshot>,
    /// How many loops there are (some may not have answered).
    pub loops_expected: usize,
    /// How long ago each loop (by index) last went round, when the probe ended (a loop
    /// missing here counts as silent for ever).
    pub loop_silence_ms: Vec<u64>,
    /// Clients past CONNECT, across loops.
    pub connected: usize,
    /// Seconds since the broker started.
    pub uptime_secs: u64,
    /// Resident memory (`None` where the platform does not say).
    pub memory: Option<rss::Memory>,
    /// Each listener's address, protocol and transport numbers.
    pub listeners: Vec<(
        String,
        &'static str,
        crate::server::transport::stats::ListenerCounts,
    )>,
    /// The store's numbers, when persistence is on.
    pub store: Option<crate::server::persist::PersistStats>,
}

impl Snapshot {
    /// The loops' counters summed.
    pub fn totals(&self) -> ShardStats {
        let mut total = ShardStats::default();
        for l in &self.loops {
            add_stats(&mut total, &l.stats);
        }
        total
    }

    /// The loops' pools summed (health: the worst; `max_live`: the sum).
    pub fn pool_totals(&self) -> PoolStats {
        let mut total = PoolStats::default();
        for l in &self.loops {
            let p = &l.pool;
            total.preheated += p.preheated;
            total.preheat_pending += p.preheat_pending;
            total.active += p.active;
            total.available += p.available;
            total.live += p.live;
            total.high_water += p.high_water;
            total.expansions += p.expansions;
            total.shrinks += p.shrinks;
            total.constructed_preheat += p.constructed_preheat;
            total.constructed_on_demand += p.constructed_on_demand;
            total.dropped_unhealthy += p.dropped_unhealthy;
            total.freed_idle += p.freed_idle;
            total.acquisitions += p.acquisitions;
            total.refused += p.refused;
            total.max_live += p.max_live;
            total.health = total.health.max(p.health);
        }
        total
    }

    /// The loops' session counts summed.
    pub fn session_totals(&self) -> SessionCounts {
        let mut t = SessionCounts::default();
        for l in &self.loops {
            t.sessions += l.sessions.sessions;
            t.online += l.sessions.online;
            t.inflight += l.sessions.inflight;
            t.queued += l.sessions.queued;
            t.queued_bytes += l.sessions.queued_bytes;
            t.congested += l.sessions.congested;
            t.holding += l.sessions.holding;
        }
        t
    }

    /// The connection limit in force (the loops agree; 0 if none answered).
    pub fn max_connections(&self) -> usize {
        self.loops
            .iter()
            .map(|l| l.max_connections)
            .max()
            .unwrap_or(0)
    }

    /// Retained messages.
    pub fn retained(&self) -> usize {
        self.loops.iter().map(|l| l.retained).max().unwrap_or(0)
    }

    /// Subscriptions across loops.
    pub fn subscriptions(&self) -> usize {
        self.loops.iter().map(|l| l.subscriptions).sum()
    }

    /// The loops that did not answer, with how long each had been silent.
    pub fn unanswered(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        (0..self.loops_expected)
            .filter(|&i| !self.loops.iter().any(|l| l.loop_index == i))
            .map(|i| (i, self.loop_silence_ms.get(i).copied().unwrap_or(u64::MAX)))
    }

    /// The loops that did not answer and have not gone round for [`LOOP_STUCK_WINDOW_MS`]:
    /// stuck, not merely late.
    pub fn stuck(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.unanswered()
            .filter(|&(_, silent_ms)| silent_ms >= LOOP_STUCK_WINDOW_MS)
    }

    /// Connections refused, every reason summed.
    pub fn refused(&self) -> u64 {
        let t = self.totals();
        t.refused_at_pool_limit
            + t.refused_descriptors
            + t.refused_at_max_connections
            + t.refused_connect
            + t.refused_per_ip
            + t.refused_listener_max_connections
    }
}

/// Adds every counter of `from` to `into`.
fn add_stats(into: &mut ShardStats, from: &ShardStats) {
    let ShardStats {
        accepted,
        refused_at_pool_limit,
        refused_descriptors,
        refused_unanswered,
        closed_proxy_header,
        shed_before_connect,
        refused_at_max_connections,
        refused_connect,
        handed_over,
        closed_bad_input,
        closed_timeout,
        publish_received,
        publish_sent,
        dropped,
        wills_published,
        refused_per_ip,
        refused_listener_max_connections,
        refused_packet_too_large,
        closed_connect_timeout,
        closed_partial_packet_timeout,
        stalls,
        stalled_ms,
        refused_topic_length,
        refused_topic_levels,
        refused_subscriptions,
        refused_topic_alias_bytes,
        refused_client_id_length,
        dropped_queue_messages,
        dropped_queue_bytes,
        dropped_expired,
        dropped_too_large,
        queued_past_limit,
        publishers_held,
        hold_timeouts,
        rate_paused_messages,
        rate_paused_bytes,
        dropped_qos0_offline,
        dropped_no_packet_id,
        dropped_group_member_gone,
        dropped_session_ended,
        closed_wrong_ack,
        refused_store_degraded,
        refused_keep_alive,
        refused_connack_too_large,
        credentials_verified,
        refused_credentials,
        disconnected_user_removed,
        denied_publish,
        denied_subscribe,
        denied_delivery,
        packets_in,
        packets_out,
        bytes_in,
        bytes_out,
    } = *from;
    into.accepted += accepted;
    into.refused_at_pool_limit += refused_at_pool_limit;
    into.refused_descriptors += refused_descriptors;
    into.refused_unanswered += refused_unanswered;
    into.closed_proxy_header += closed_proxy_header;
    into.shed_before_connect += shed_before_connect;
    into.refused_at_max_connections += refused_at_max_connections;
    into.refused_connect += refused_connect;
    into.handed_over += handed_over;
    into.closed_bad_input += closed_bad_input;
    into.closed_timeout += closed_timeout;
    into.publish_received += publish_received;
    into.publish_sent += publish_sent;
    into.dropped += dropped;
    into.wills_published += wills_published;
    into.refused_per_ip += refused_per_ip;
    into.refused_listener_max_connections += refused_listener_max_connections;
    into.refused_packet_too_large += refused_packet_too_large;
    into.closed_connect_timeout += closed_connect_timeout;
    into.closed_partial_packet_timeout += closed_partial_packet_timeout;
    into.stalls += stalls;
    into.stalled_ms += stalled_ms;
    into.refused_topic_length += refused_topic_length;
    into.refused_topic_levels += refused_topic_levels;
    into.refused_subscriptions += refused_subscriptions;
    into.refused_topic_alias_bytes += refused_topic_alias_bytes;
    into.refused_client_id_length += refused_client_id_length;
    into.dropped_queue_messages += dropped_queue_messages;
    into.dropped_queue_bytes += dropped_queue_bytes;
    into.dropped_expired += dropped_expired;
    into.dropped_too_large += dropped_too_large;
    into.queued_past_limit += queued_past_limit;
    into.publishers_held += publishers_held;
    into.hold_timeouts += hold_timeouts;
    into.rate_paused_messages += rate_paused_messages;
    into.rate_paused_bytes += rate_paused_bytes;
    into.dropped_qos0_offline += dropped_qos0_offline;
    into.dropped_no_packet_id += dropped_no_packet_id;
    into.dropped_group_member_gone += dropped_group_member_gone;
    into.dropped_session_ended += dropped_session_ended;
    into.closed_wrong_ack += closed_wrong_ack;
    into.refused_store_degraded += refused_store_degraded;
    into.refused_keep_alive += refused_keep_alive;
    into.refused_connack_too_large += refused_connack_too_large;
    into.credentials_verified += credentials_verified;
    into.refused_credentials += refused_credentials;
    into.disconnected_user_removed += disconnected_user_removed;
    into.denied_publish += denied_publish;
    into.denied_subscribe += denied_subscribe;
    into.denied_delivery += denied_delivery;
    into.bytes_in += bytes_in;
    into.bytes_out += bytes_out;
    into.packets_in.add(&packets_in);
    into.packets_out.add(&packets_out);
}

/// Asks the event loops for their numbers and hands them `$SYS` messages. Cheap to clone.
#[derive(Clone)]
pub struct Probe {
    peers: Peers,
    shared: Arc<Shared>,
    transport: Arc<crate::server::transport::stats::TransportStats>,
    persister: Option<Arc<crate::server::persist::Persister>>,
    started: Instant,
}

impl Probe {
    /// A probe of the loops behind `peers`.
    pub fn new(
        peers: Peers,
        shared: Arc<Shared>,
        transport: Arc<crate::server::transport::stats::TransportStats>,
    ) -> Probe {
        Probe {
            peers,
            shared,
            transport,
            persister: None,
            started: Instant::now(),
        }
    }

    /// The same probe, also reading the store's numbers.
    pub fn with_store(
        mut self,
        persister: Option<Arc<crate::server::persist::Persister>>,
    ) -> Probe {
        self.persister = persister;
        self
    }

    /// Every loop's numbers; a loop that does not answer within [`PROBE_TIMEOUT_MS`] is
    /// left out (and the health then says whether it is late or stuck, from how long ago it
    /// last went round).
    pub fn snapshot(&self) -> Snapshot {
        let (reply, replies) = crossbeam_channel::unbounded();
        for peer in self.peers.iter() {
            let _ = peer.send(Inbound::Control(Control::Snapshot(reply.clone())));
            let _ = peer.wake();
        }
        drop(reply);
        let deadline = Instant::now() + Duration::from_millis(PROBE_TIMEOUT_MS);
        let mut loops = Vec::with_capacity(self.peers.len());
        while loops.len() < self.peers.len() {
            match replies.recv_deadline(deadline) {
                Ok(snapshot) => loops.push(snapshot),
                Err(_) => break,
            }
        }
        loops.sort_by_key(|l: &LoopSnapshot| l.loop_index);
        Snapshot {
            loops,
            loops_expected: self.peers.len(),
            loop_silence_ms: self.peers.iter().map(|p| p.silent_ms()).collect(),
            connected: self
                .shared
                .connected
                .load(std::sync::atomic::Ordering::Relaxed),
            uptime_secs: self.started.elapsed().as_secs(),
            memory: rss::read(),
            listeners: self
                .transport
                .iter()
                .map(|l| (l.name.clone(), l.protocol, l.counts()))
                .collect(),
            store: self.persister.as_ref().map(|p| p.stats()),
        }
    }

    /// Hands `messages` to loop 0, which routes them like PUBLISH packets (to its own
    /// subscribers and every other loop with subscribers).
    pub fn publish_sys(&self, messages: Vec<(String, String)>) {
        if let Some(peer) = self.peers.first() {
            let _ = peer.send(Inbound::Control(Control::PublishSys(messages)));
            let _ = peer.wake();
        }
    }
}

/// Starts the monitoring threads `settings` asks for. A metrics address that cannot be
/// bound is logged as an error and the broker runs on without it (MQTT service matters
/// more than its dashboard).
pub fn start(settings: &MonitorSettings, probe: &Probe) {
    if let Some(addr) = settings.metrics_listen {
        match http::spawn(addr, probe.clone(), settings.metrics_token.clone()) {
            Ok(bound) => match &settings.metrics_token {
                Some(token) => tracing::info!(
                    addr = %bound,
                    token_file = %token.path().display(),
                    "metrics and health listening (GET /metrics with the bearer token, GET /healthz)"
                ),
                None => {
                    tracing::info!(addr = %bound, "metrics and health listening (GET /metrics, GET /healthz)")
                }
            },
            Err(error) => {
                tracing::error!(addr = %addr, %error, "could not serve metrics and health; running without them")
            }
        }
    } else {
        tracing::info!("metrics and health endpoint off (metrics_listen = \"off\")");
    }
    if let Err(error) = sys::spawn(settings.sys_interval_secs, probe.clone()) {
        tracing::error!(%error, "could not start the $SYS and health thread");
    }
}
