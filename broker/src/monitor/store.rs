//! The store's metrics (`[persistence]`): commits, failures, whether it is degraded, its
//! size on disk, and what the recovery at start-up found and how long it took. None of
//! them exists when persistence is off.

use metrics::{counter, gauge};

use super::Snapshot;

/// Descriptions of the metrics recorded here: kind is counter unless the name says gauge.
pub const DESCRIPTIONS: &[(&str, bool, &str)] = &[
    (
        "starling_store_commits_total",
        false,
        "Durable commits of the store (one fsync each, shared by everything queued before it).",
    ),
    (
        "starling_store_ops_total",
        false,
        "Changes applied to the store (sessions, queue entries, messages, retained, routes).",
    ),
    (
        "starling_store_commit_failures_total",
        false,
        "Commits that failed (disk full, I/O error); their changes are retried.",
    ),
    (
        "starling_store_commit_seconds_total",
        false,
        "Time spent committing (writing and syncing), in whole seconds.",
    ),
    (
        "starling_store_refused_publishes_total",
        false,
        "QoS 1/2 PUBLISHes refused while the store could not write (MQTT 5: 0x97; 3.1.1: connection closed).",
    ),
    (
        "starling_store_degraded",
        true,
        "1 while the store's last commit failed (QoS 1/2 PUBLISHes are refused meanwhile), else 0.",
    ),
    (
        "starling_store_disk_bytes",
        true,
        "Bytes the store's file occupies on disk.",
    ),
    (
        "starling_store_messages",
        true,
        "Message bodies the store holds (each once, however many queues reference it).",
    ),
    (
        "starling_store_recovery_seconds",
        true,
        "How long opening and reading the store took at start-up.",
    ),
    (
        "starling_store_recovered_sessions",
        true,
        "Sessions rebuilt from the store at start-up.",
    ),
    (
        "starling_store_recovered_messages",
        true,
        "Messages queued or in flight rebuilt from the store at start-up.",
    ),
    (
        "starling_store_recovered_retained",
        true,
        "Retained messages rebuilt from the store at start-up.",
    ),
];

/// Records the store's numbers, if persistence is on.
pub fn record(s: &Snapshot) {
    let Some(store) = &s.store else {
        return;
    };
    counter!("starling_store_commits_total").absolute(store.store.syncs);
    counter!("starling_store_ops_total").absolute(store.store.ops);
    counter!("starling_store_commit_failures_total").absolute(store.failed_commits);
    counter!("starling_store_commit_seconds_total").absolute(store.commit_micros / 1_000_000);
    counter!("starling_store_refused_publishes_total").absolute(s.totals().refused_store_degraded);
    gauge!("starling_store_degraded").set(f64::from(u8::from(store.degraded)));
    gauge!("starling_store_disk_bytes").set(store.store.disk_bytes as f64);
    gauge!("starling_store_messages").set(store.store.messages as f64);
    gauge!("starling_store_recovery_seconds").set(store.recovery_ms as f64 / 1000.0);
    gauge!("starling_store_recovered_sessions").set(store.recovered.sessions as f64);
    gauge!("starling_store_recovered_messages").set(store.recovered.outbound as f64);
    gauge!("starling_store_recovered_retained").set(store.recovered.retained as f64);
}
