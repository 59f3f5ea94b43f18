//! A [`Snapshot`] as Prometheus text (exposition format 0.0.4).
//!
//! The values go through the `metrics` facade into a `metrics-exporter-prometheus`
//! recorder that this module owns (a local recorder, not the process-global one: nothing
//! else in the broker records into it, and tests can build several). Counters are set
//! with `absolute` from the loops' running totals, gauges with `set`, then
//! `PrometheusHandle::render` writes the text. No histogram goes through the recorder, so
//! the exporter's upkeep has nothing to drain (it is run after each render anyway, as its
//! docs ask); the handshake histogram's buckets are counted by the loops and written by
//! `listeners`.

use metrics::{Unit, counter, describe_counter, describe_gauge, gauge, with_local_recorder};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use starling_pool::Health;

use super::Snapshot;
use super::health::HealthReport;
use crate::core::observe::DropReason;
use crate::server::outside::{LingerEnd, OutsideStats};

/// Names of the packet types by their fixed-header nibble (0 and 15 are reserved in 3.1.1;
/// 15 is AUTH in 5.0).
pub const PACKET_TYPE_NAMES: [&str; 16] = [
    "reserved",
    "connect",
    "connack",
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "subscribe",
    "suback",
    "unsubscribe",
    "unsuback",
    "pingreq",
    "pingresp",
    "disconnect",
    "auth",
];

const QOS_NAMES: [&str; 3] = ["0", "1", "2"];
/// Packet types a client sends (3.1.1).
const CLIENT_TO_SERVER: [usize; 10] = [1, 3, 4, 5, 6, 7, 8, 10, 12, 14];
/// Packet types the server sends (3.1.1).
const SERVER_TO_CLIENT: [usize; 9] = [2, 3, 4, 5, 6, 7, 9, 11, 13];

/// A health state as a number: 0 healthy, 1 degraded, 2 overloaded, 3 unavailable.
pub fn health_value(health: Health) -> f64 {
    match health {
        Health::Healthy => 0.0,
        Health::Degraded => 1.0,
        Health::Overloaded => 2.0,
        Health::Unavailable => 3.0,
    }
}

/// The recorder and its handle.
pub struct Exporter {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for Exporter {
    fn default() -> Self {
        Exporter::new()
    }
}

impl Exporter {
    /// A recorder with every metric described.
    pub fn new() -> Exporter {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        with_local_recorder(&recorder, describe_all);
        Exporter { recorder, handle }
    }

    /// `snapshot` as Prometheus text.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        with_local_recorder(&self.recorder, || {
            record(snapshot);
            super::listeners::record(snapshot);
            super::store::record(snapshot);
        });
        let mut text = self.handle.render();
        self.handle.run_upkeep();
        text.push_str(&super::listeners::render_histogram(snapshot));
        text
    }
}

/// Every metric: its kind, name, unit and help text.
const DESCRIPTIONS: &[(Kind, &str, Option<Unit>, &str)] = &[
    (
        Kind::Gauge,
        "starling_connections",
        None,
        "Clients past CONNECT, all loops.",
    ),
    (
        Kind::Gauge,
        "starling_max_connections",
        None,
        "The global connection limit.",
    ),
    (
        Kind::Gauge,
        "starling_sockets",
        None,
        "Sockets open on the loop (connected or not yet).",
    ),
    (
        Kind::Counter,
        "starling_connections_accepted_total",
        None,
        "Connections accepted (sockets given a pool object).",
    ),
    (
        Kind::Counter,
        "starling_connections_refused_total",
        None,
        "Connections refused, by reason.",
    ),
    (
        Kind::Counter,
        "starling_credentials_verified_total",
        None,
        "CONNECT passwords sent to the verifier threads.",
    ),
    (
        Kind::Counter,
        "starling_disconnected_user_removed_total",
        None,
        "Clients disconnected because a reload removed their user from the password file.",
    ),
    (
        Kind::Counter,
        "starling_access_denied_total",
        None,
        "PUBLISHes, subscriptions and deliveries the ACL (or a $ topic) denied, by what.",
    ),
    (
        Kind::Counter,
        "starling_connections_closed_total",
        None,
        "Connections closed by the broker, by reason.",
    ),
    (
        Kind::Counter,
        "starling_refusals_unanswered_total",
        None,
        "Newcomers refused outside the pool and closed without a CONNACK (no CONNECT in time, not a CONNECT, or no room).",
    ),
    (
        Kind::Gauge,
        "starling_outside_pool_sockets",
        None,
        "Sockets a loop holds outside its pool, by state: refusing (a newcomer awaiting its CONNACK 0x03/0x97), lingering (closed after a last packet, input discarded until EOF).",
    ),
    (
        Kind::Counter,
        "starling_outside_pool_connacks_total",
        None,
        "Refusing CONNACKs written to newcomers held outside the pool.",
    ),
    (
        Kind::Counter,
        "starling_lingering_closes_total",
        None,
        "Lingering closes ended, by how: eof (the client closed), timeout, bytes (it sent too much), evicted (room needed, or shutdown), error.",
    ),
    (
        Kind::Counter,
        "starling_connections_handed_over_total",
        None,
        "CONNECTs moved to the loop owning their client id.",
    ),
    (
        Kind::Counter,
        "starling_loop_stalls_total",
        None,
        "Times an event loop found it had not run for a second or more (host paused, process stopped, thread not scheduled); that time is not counted against clients' deadlines.",
    ),
    (
        Kind::Counter,
        "starling_loop_stalled_seconds_total",
        Some(Unit::Seconds),
        "Seconds of those stalls.",
    ),
    (
        Kind::Counter,
        "starling_packets_received_total",
        None,
        "Complete MQTT packets received, by type.",
    ),
    (
        Kind::Counter,
        "starling_packets_sent_total",
        None,
        "MQTT packets written to clients, by type.",
    ),
    (
        Kind::Counter,
        "starling_received_bytes_total",
        Some(Unit::Bytes),
        "Bytes read from client sockets.",
    ),
    (
        Kind::Counter,
        "starling_sent_bytes_total",
        Some(Unit::Bytes),
        "Bytes written to client sockets.",
    ),
    (
        Kind::Counter,
        "starling_messages_published_total",
        None,
        "PUBLISH packets received from clients, by QoS.",
    ),
    (
        Kind::Counter,
        "starling_messages_delivered_total",
        None,
        "PUBLISH packets written to subscribers, by QoS.",
    ),
    (
        Kind::Counter,
        "starling_messages_dropped_total",
        None,
        "Messages dropped, by reason.",
    ),
    (
        Kind::Counter,
        "starling_messages_queued_past_limit_total",
        None,
        "Messages queued past max_queued_messages for a subscriber holding its publishers back (flow control), instead of dropped.",
    ),
    (
        Kind::Counter,
        "starling_publishers_held_total",
        None,
        "Times a publisher was held back (not read) because its messages went to a subscriber whose queue was filling.",
    ),
    (
        Kind::Counter,
        "starling_publisher_hold_timeouts_total",
        None,
        "Times a subscriber held its publishers for max_publisher_hold_ms without draining, so its queue limit applied instead.",
    ),
    (
        Kind::Gauge,
        "starling_sessions_congested",
        None,
        "Online sessions whose queue is over its high-water mark, by whether they hold their publishers back.",
    ),
    (
        Kind::Counter,
        "starling_publish_rate_pauses_total",
        None,
        "Times a client was not read for going over a per-client publish rate, by limit.",
    ),
    (
        Kind::Counter,
        "starling_wills_published_total",
        None,
        "Wills published.",
    ),
    (
        Kind::Counter,
        "starling_requests_refused_total",
        None,
        "Topics and subscriptions refused at a limit, by reason.",
    ),
    (
        Kind::Gauge,
        "starling_retained_messages",
        None,
        "Retained messages stored.",
    ),
    (
        Kind::Gauge,
        "starling_sessions",
        None,
        "Sessions, by state.",
    ),
    (
        Kind::Gauge,
        "starling_subscriptions",
        None,
        "Subscriptions held.",
    ),
    (
        Kind::Gauge,
        "starling_inflight_messages",
        None,
        "QoS 1/2 messages sent and not yet acknowledged.",
    ),
    (
        Kind::Gauge,
        "starling_queued_messages",
        None,
        "Messages waiting in session queues.",
    ),
    (
        Kind::Gauge,
        "starling_queued_bytes",
        Some(Unit::Bytes),
        "Topic and payload bytes of the queued messages.",
    ),
    (
        Kind::Gauge,
        "starling_pool_preheated_objects",
        None,
        "Connection objects the loop's pool keeps built (its preheated target).",
    ),
    (
        Kind::Gauge,
        "starling_pool_active_objects",
        None,
        "Pool objects in use by connections.",
    ),
    (
        Kind::Gauge,
        "starling_pool_available_objects",
        None,
        "Pool objects built and idle.",
    ),
    (
        Kind::Gauge,
        "starling_pool_live_objects",
        None,
        "Pool objects built (active + available).",
    ),
    (
        Kind::Gauge,
        "starling_pool_max_live_objects",
        None,
        "The pool's hard limit (its share of max_connections plus slack).",
    ),
    (
        Kind::Gauge,
        "starling_pool_high_water_objects",
        None,
        "Most pool objects in use at once.",
    ),
    (
        Kind::Counter,
        "starling_pool_expansions_total",
        None,
        "Times the preheated target grew.",
    ),
    (
        Kind::Counter,
        "starling_pool_shrinks_total",
        None,
        "Times the idle sweep freed objects.",
    ),
    (
        Kind::Counter,
        "starling_pool_refused_total",
        None,
        "Acquisitions refused at max_live_objects.",
    ),
    (
        Kind::Gauge,
        "starling_pool_reuse_ratio",
        None,
        "Acquisitions served by an already built object (0..1).",
    ),
    (
        Kind::Gauge,
        "starling_pool_health",
        None,
        "Pool health: 0 healthy, 1 degraded, 2 overloaded, 3 unavailable.",
    ),
    (
        Kind::Gauge,
        "starling_buffers_lent",
        None,
        "Fixed buffers lent to connections.",
    ),
    (
        Kind::Gauge,
        "starling_buffers_idle",
        None,
        "Fixed buffers idle in the loop.",
    ),
    (
        Kind::Gauge,
        "starling_buffer_size_bytes",
        Some(Unit::Bytes),
        "Size of one lent buffer.",
    ),
    (
        Kind::Gauge,
        "starling_resident_memory_bytes",
        Some(Unit::Bytes),
        "Resident set size of the process.",
    ),
    (
        Kind::Gauge,
        "starling_resident_memory_peak_bytes",
        Some(Unit::Bytes),
        "Highest resident set size of the process so far.",
    ),
    (
        Kind::Gauge,
        "starling_health",
        None,
        "Broker health: 0 healthy, 1 degraded, 2 overloaded, 3 unavailable.",
    ),
    (
        Kind::Gauge,
        "starling_utilisation_ratio",
        None,
        "Connected clients over max_connections.",
    ),
    (
        Kind::Gauge,
        "starling_uptime_seconds",
        Some(Unit::Seconds),
        "Seconds since start.",
    ),
    (
        Kind::Gauge,
        "starling_event_loops",
        None,
        "Event loops, by whether they answered the probe (answering, silent) and, of the silent ones, those that made no progress over the stuck window (stuck).",
    ),
];

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

fn describe_all() {
    let layered = super::listeners::DESCRIPTIONS.iter();
    for &(name, is_gauge, help) in layered.chain(super::store::DESCRIPTIONS) {
        if is_gauge {
            describe_gauge!(name, help);
        } else {
            describe_counter!(name, help);
        }
    }
    for &(kind, name, unit, help) in DESCRIPTIONS {
        match (kind, unit) {
            (Kind::Counter, Some(unit)) => describe_counter!(name, unit, help),
            (Kind::Counter, None) => describe_counter!(name, help),
            (Kind::Gauge, Some(unit)) => describe_gauge!(name, unit, help),
            (Kind::Gauge, None) => describe_gauge!(name, help),
        }
    }
}

fn record(s: &Snapshot) {
    let t = s.totals();
    let (packets_in, packets_out) = (t.packets_in.by_type(), t.packets_out.by_type());
    let (published, delivered) = (
        t.packets_in.publish_by_qos(),
        t.packets_out.publish_by_qos(),
    );
    gauge!("starling_connections").set(s.connected as f64);
    gauge!("starling_max_connections").set(s.max_connections() as f64);
    counter!("starling_connections_accepted_total").absolute(t.accepted);
    counter!("starling_credentials_verified_total").absolute(t.credentials_verified);
    counter!("starling_disconnected_user_removed_total").absolute(t.disconnected_user_removed);
    for (what, value) in [
        ("publish", t.denied_publish),
        ("subscribe", t.denied_subscribe),
        ("delivery", t.denied_delivery),
    ] {
        counter!("starling_access_denied_total", "what" => what).absolute(value);
    }
    for (reason, value) in [
        ("pool_limit", t.refused_at_pool_limit),
        ("descriptors", t.refused_descriptors),
        ("max_connections", t.refused_at_max_connections),
        (
            "protocol",
            t.refused_connect.saturating_sub(
                t.refused_client_id_length
                    + t.refused_keep_alive
                    + t.refused_connack_too_large
                    + t.refused_credentials,
            ),
        ),
        ("credentials", t.refused_credentials),
        ("client_id_length", t.refused_client_id_length),
        ("keep_alive_over_cap", t.refused_keep_alive),
        ("connack_too_large", t.refused_connack_too_large),
        ("per_ip", t.refused_per_ip),
        (
            "listener_max_connections",
            t.refused_listener_max_connections,
        ),
    ] {
        counter!("starling_connections_refused_total", "reason" => reason).absolute(value);
    }
    for (reason, value) in [
        (
            "bad_input",
            t.closed_bad_input
                .saturating_sub(t.refused_packet_too_large + t.closed_wrong_ack),
        ),
        ("packet_too_large", t.refused_packet_too_large),
        ("wrong_ack", t.closed_wrong_ack),
        (
            "keep_alive_timeout",
            t.closed_timeout
                .saturating_sub(t.closed_connect_timeout)
                .saturating_sub(t.closed_partial_packet_timeout),
        ),
        ("connect_timeout", t.closed_connect_timeout),
        ("shed_before_connect", t.shed_before_connect),
        ("partial_packet_timeout", t.closed_partial_packet_timeout),
        ("proxy_header", t.closed_proxy_header),
    ] {
        counter!("starling_connections_closed_total", "reason" => reason).absolute(value);
    }
    counter!("starling_refusals_unanswered_total").absolute(t.refused_unanswered);
    counter!("starling_connections_handed_over_total").absolute(t.handed_over);
    counter!("starling_loop_stalls_total").absolute(t.stalls);
    counter!("starling_loop_stalled_seconds_total").absolute(t.stalled_ms / 1000);
    for (kind, name) in PACKET_TYPE_NAMES.iter().enumerate() {
        // Each direction's own packet types always, any other only once seen.
        if packets_in[kind] > 0 || CLIENT_TO_SERVER.contains(&kind) {
            counter!("starling_packets_received_total", "type" => *name).absolute(packets_in[kind]);
        }
        if packets_out[kind] > 0 || SERVER_TO_CLIENT.contains(&kind) {
            counter!("starling_packets_sent_total", "type" => *name).absolute(packets_out[kind]);
        }
    }
    counter!("starling_received_bytes_total").absolute(t.bytes_in);
    counter!("starling_sent_bytes_total").absolute(t.bytes_out);
    for (qos, name) in QOS_NAMES.iter().enumerate() {
        counter!("starling_messages_published_total", "qos" => *name).absolute(published[qos]);
        counter!("starling_messages_delivered_total", "qos" => *name).absolute(delivered[qos]);
    }
    // Invariant: every drop is counted under one reason (`ShardStats::count_drop`).
    debug_assert_eq!(
        t.dropped,
        DropReason::ALL.iter().map(|&r| t.drops(r)).sum::<u64>()
    );
    for reason in DropReason::ALL {
        counter!("starling_messages_dropped_total", "reason" => reason.label())
            .absolute(t.drops(reason));
    }
    counter!("starling_messages_queued_past_limit_total").absolute(t.queued_past_limit);
    counter!("starling_publishers_held_total").absolute(t.publishers_held);
    counter!("starling_publisher_hold_timeouts_total").absolute(t.hold_timeouts);
    for (limit, value) in [
        ("messages", t.rate_paused_messages),
        ("bytes", t.rate_paused_bytes),
    ] {
        counter!("starling_publish_rate_pauses_total", "limit" => limit).absolute(value);
    }
    counter!("starling_wills_published_total").absolute(t.wills_published);
    for (reason, value) in [
        ("topic_length", t.refused_topic_length),
        ("topic_levels", t.refused_topic_levels),
        ("max_subscriptions_per_client", t.refused_subscriptions),
        ("max_topic_alias_bytes", t.refused_topic_alias_bytes),
    ] {
        counter!("starling_requests_refused_total", "reason" => reason).absolute(value);
    }
    let sessions = s.session_totals();
    gauge!("starling_retained_messages").set(s.retained() as f64);
    gauge!("starling_sessions_congested", "state" => "holding").set(sessions.holding as f64);
    gauge!("starling_sessions_congested", "state" => "overflowing")
        .set(sessions.congested.saturating_sub(sessions.holding) as f64);
    gauge!("starling_sessions", "state" => "online").set(sessions.online as f64);
    gauge!("starling_sessions", "state" => "offline")
        .set(sessions.sessions.saturating_sub(sessions.online) as f64);
    gauge!("starling_subscriptions").set(s.subscriptions() as f64);
    gauge!("starling_inflight_messages").set(sessions.inflight as f64);
    gauge!("starling_queued_messages").set(sessions.queued as f64);
    gauge!("starling_queued_bytes").set(sessions.queued_bytes as f64);
    for l in &s.loops {
        let label = l.loop_index.to_string();
        let p = &l.pool;
        gauge!("starling_sockets", "loop" => label.clone()).set(l.sockets as f64);
        for (name, value) in [
            ("starling_pool_preheated_objects", p.preheated),
            ("starling_pool_active_objects", p.active),
            ("starling_pool_available_objects", p.available),
            ("starling_pool_live_objects", p.live),
            ("starling_pool_max_live_objects", p.max_live),
            ("starling_pool_high_water_objects", p.high_water),
            ("starling_buffers_lent", l.buffers_lent),
            ("starling_buffers_idle", l.buffers_idle),
        ] {
            gauge!(name, "loop" => label.clone()).set(value as f64);
        }
        counter!("starling_pool_expansions_total", "loop" => label.clone()).absolute(p.expansions);
        counter!("starling_pool_shrinks_total", "loop" => label.clone()).absolute(p.shrinks);
        counter!("starling_pool_refused_total", "loop" => label.clone()).absolute(p.refused);
        gauge!("starling_pool_reuse_ratio", "loop" => label.clone()).set(p.reuse_rate());
        gauge!("starling_pool_health", "loop" => label.clone()).set(health_value(p.health));
        record_outside(&label, &l.outside);
    }
    if let Some(l) = s.loops.first() {
        gauge!("starling_buffer_size_bytes").set(l.buffer_bytes as f64);
    }
    if let Some(m) = s.memory {
        gauge!("starling_resident_memory_bytes").set(m.rss_bytes as f64);
        gauge!("starling_resident_memory_peak_bytes").set(m.peak_rss_bytes as f64);
    }
    let health = HealthReport::from_snapshot(s);
    gauge!("starling_health").set(health_value(health.status));
    gauge!("starling_utilisation_ratio").set(health.utilisation);
    gauge!("starling_uptime_seconds").set(s.uptime_secs as f64);
    gauge!("starling_event_loops", "state" => "answering").set(s.loops.len() as f64);
    gauge!("starling_event_loops", "state" => "silent")
        .set(s.loops_expected.saturating_sub(s.loops.len()) as f64);
    gauge!("starling_event_loops", "state" => "stuck").set(s.stuck().count() as f64);
}

/// One loop's sockets outside its pool.
fn record_outside(label: &str, o: &OutsideStats) {
    for (state, value) in [("refusing", o.refusing), ("lingering", o.lingering)] {
        gauge!("starling_outside_pool_sockets", "loop" => label.to_string(), "state" => state)
            .set(value as f64);
    }
    counter!("starling_outside_pool_connacks_total", "loop" => label.to_string())
        .absolute(o.answered);
    for (end, value) in LingerEnd::ALL.iter().zip(o.linger_ended) {
        counter!("starling_lingering_closes_total", "loop" => label.to_string(), "end" => end.name())
            .absolute(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitor::LoopSnapshot;

    #[test]
    fn renders_counters_by_type_and_qos_from_first_bytes() {
        let mut lp = LoopSnapshot {
            max_connections: 100,
            ..LoopSnapshot::default()
        };
        lp.stats.packets_in.count(0x10); // CONNECT
        lp.stats.packets_in.count(0x32); // PUBLISH QoS 1
        lp.stats.packets_out.count(0x40); // PUBACK
        lp.pool.preheated = 1024;
        let snapshot = Snapshot {
            loops: vec![lp],
            loops_expected: 1,
            connected: 1,
            ..Snapshot::default()
        };
        let text = Exporter::new().render(&snapshot);
        for line in [
            "# TYPE starling_packets_received_total counter",
            "starling_packets_received_total{type=\"connect\"} 1",
            "starling_messages_published_total{qos=\"1\"} 1",
            "starling_packets_sent_total{type=\"puback\"} 1",
            "starling_pool_preheated_objects{loop=\"0\"} 1024",
            "starling_connections 1",
            "starling_event_loops{state=\"answering\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }
}
