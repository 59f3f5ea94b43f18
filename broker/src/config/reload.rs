//! A live reload (SIGHUP): which keys changed between two resolutions, and which of them can
//! take effect without a restart.
//!
//! Live: the log level, the shutdown timeout, every `limits.*` key, each listener's
//! `max_connections`, and every `pool.*` key (each loop's pool is reconfigured in place:
//! `starling_pool::Pool::reconfigure`). They apply to the next accept, CONNECT, packet,
//! delivery, preheat step or sweep; nobody is disconnected by a change (a lowered limit
//! refuses newcomers, it does not evict).
//! Each listener's access keys (`allow_anonymous`, `password_file`, `acl_file`,
//! `session_takeover`) are live too, and the password and ACL files are re-read at every
//! reload whether a key changed or not.
//! Restart: the event-loop count, the listeners' addresses, protocols and
//! `proxy_protocol`, every `persistence.*` key, and every
//! `monitoring.*` key (the metrics thread keeps what it started with), including a new token
//! in an unchanged `monitoring.token_file`.

use super::Settings;

/// One key whose value differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The dotted key.
    pub key: String,
    /// The value in force.
    pub old: String,
    /// The value in the file.
    pub new: String,
    /// Whether it takes effect now (else it needs a restart).
    pub live: bool,
}

/// Every key and its value, as text.
pub fn entries(s: &Settings) -> Vec<(String, String)> {
    let c = &s.core;
    let optional = |v: Option<usize>| v.map_or_else(|| "(preset)".to_string(), |v| v.to_string());
    let mut out: Vec<(String, String)> = vec![
        ("server.event_loops".into(), s.event_loops.to_string()),
        (
            "server.log_level".into(),
            format!("{:?}", s.log_level).to_lowercase(),
        ),
        (
            "server.log_format".into(),
            format!("{:?}", s.log_format).to_lowercase(),
        ),
        (
            "server.shutdown_timeout_ms".into(),
            s.shutdown_timeout_ms.to_string(),
        ),
        ("listeners.count".into(), s.listeners.len().to_string()),
        (
            "persistence.mode".into(),
            s.persistence.mode.name().to_string(),
        ),
        (
            "persistence.path".into(),
            s.persistence.path.display().to_string(),
        ),
        (
            "persistence.flush_interval_ms".into(),
            s.persistence.flush_interval_ms.to_string(),
        ),
        (
            "persistence.cache_mib".into(),
            (s.persistence.cache_bytes >> 20).to_string(),
        ),
        (
            "monitoring.metrics_listen".into(),
            s.monitor
                .metrics_listen
                .map_or_else(|| "off".to_string(), |a| a.to_string()),
        ),
        (
            "monitoring.sys_interval_secs".into(),
            s.monitor.sys_interval_secs.to_string(),
        ),
        (
            "monitoring.token_file".into(),
            s.monitor
                .metrics_token
                .as_ref()
                .map_or_else(|| "none".to_string(), |t| t.path().display().to_string()),
        ),
        (
            "limits.max_connections".into(),
            c.max_connections.to_string(),
        ),
        (
            "limits.max_connections_per_ip".into(),
            s.max_connections_per_ip.to_string(),
        ),
        (
            "limits.connect_timeout_ms".into(),
            c.connect_timeout_ms.to_string(),
        ),
        (
            "limits.partial_packet_timeout_ms".into(),
            c.partial_packet_timeout_ms.to_string(),
        ),
        (
            "limits.max_packet_size_bytes".into(),
            c.max_packet_size_bytes.to_string(),
        ),
        (
            "limits.max_keep_alive_secs".into(),
            c.max_keep_alive_secs.to_string(),
        ),
        (
            "limits.max_inflight_messages".into(),
            c.max_inflight_messages.to_string(),
        ),
        (
            "limits.max_queued_messages".into(),
            c.max_queued_messages.to_string(),
        ),
        (
            "limits.max_queued_bytes".into(),
            c.max_queued_bytes.to_string(),
        ),
        (
            "limits.max_subscriptions_per_client".into(),
            c.max_subscriptions_per_client.to_string(),
        ),
        (
            "limits.max_topic_length_bytes".into(),
            c.max_topic_length_bytes.to_string(),
        ),
        (
            "limits.max_topic_levels".into(),
            c.max_topic_levels.to_string(),
        ),
        (
            "limits.max_output_buffer_bytes".into(),
            c.max_output_buffer_bytes.to_string(),
        ),
        (
            "limits.topic_alias_maximum".into(),
            c.topic_alias_maximum.to_string(),
        ),
        (
            "limits.receive_maximum".into(),
            c.receive_maximum.to_string(),
        ),
        (
            "limits.max_publisher_hold_ms".into(),
            c.max_publisher_hold_ms.to_string(),
        ),
        (
            "limits.max_publish_rate_messages_per_sec".into(),
            c.max_publish_rate_messages_per_sec.to_string(),
        ),
        (
            "limits.max_publish_rate_bytes_per_sec".into(),
            c.max_publish_rate_bytes_per_sec.to_string(),
        ),
        (
            "limits.close_linger_timeout_ms".into(),
            c.close_linger_timeout_ms.to_string(),
        ),
        (
            "limits.close_linger_max_bytes".into(),
            c.close_linger_max_bytes.to_string(),
        ),
        (
            "limits.max_topic_alias_bytes".into(),
            c.max_topic_alias_bytes.to_string(),
        ),
        (
            "limits.max_client_id_length_bytes".into(),
            c.max_client_id_length_bytes.to_string(),
        ),
        (
            "pool.preset".into(),
            s.pool_preset
                .map_or_else(|| "(none)".to_string(), |p| format!("{p:?}").to_lowercase()),
        ),
        (
            "pool.initial_objects".into(),
            optional(s.pool_initial_objects),
        ),
        (
            "pool.max_preheated_objects".into(),
            optional(s.pool_max_preheated_objects),
        ),
        ("pool.idle_ttl_ms".into(), c.pool.idle_ttl_ms.to_string()),
        (
            "pool.growth_threshold_percent".into(),
            c.pool.growth_threshold_percent.to_string(),
        ),
        (
            "pool.growth_factor_percent".into(),
            c.pool.growth_factor_percent.to_string(),
        ),
    ];
    for (i, l) in s.listeners.iter().enumerate() {
        out.push((
            format!("listeners[{i}].protocol"),
            format!("{:?}", l.protocol).to_lowercase(),
        ));
        out.push((format!("listeners[{i}].bind"), l.bind.to_string()));
        out.push((
            format!("listeners[{i}].proxy_protocol"),
            l.proxy_protocol.to_string(),
        ));
        out.push((
            format!("listeners[{i}].max_connections"),
            l.max_connections.to_string(),
        ));
        let a = &l.access;
        let path = |p: &Option<std::path::PathBuf>| {
            p.as_ref()
                .map_or_else(|| "(none)".to_string(), |p| p.display().to_string())
        };
        out.push((
            format!("listeners[{i}].allow_anonymous"),
            a.allow_anonymous.to_string(),
        ));
        out.push((
            format!("listeners[{i}].password_file"),
            path(&a.password_file),
        ));
        out.push((format!("listeners[{i}].acl_file"), path(&a.acl_file)));
        out.push((
            format!("listeners[{i}].session_takeover"),
            format!("{:?}", a.session_takeover).to_lowercase(),
        ));
    }
    out
}

/// A listener's keys that change while the broker runs (if it keeps its address).
const LIVE_LISTENER_KEYS: [&str; 5] = [
    "max_connections",
    "allow_anonymous",
    "password_file",
    "acl_file",
    "session_takeover",
];

/// Whether `key` can change while the broker runs.
pub fn is_live(key: &str) -> bool {
    key.starts_with("limits.")
        || key.starts_with("pool.")
        || key == "server.log_level"
        || key == "server.shutdown_timeout_ms"
        || (key.starts_with("listeners[")
            && LIVE_LISTENER_KEYS
                .iter()
                .any(|k| key.ends_with(&format!("].{k}"))))
}

/// The keys whose values differ between `old` and `new`, in the order of [`entries`].
/// A listener's `max_connections` is live only if that listener keeps its address.
pub fn diff(old: &Settings, new: &Settings) -> Vec<Change> {
    let before = entries(old);
    let after = entries(new);
    let mut changes = Vec::new();
    for (key, new_value) in &after {
        let old_value = before
            .iter()
            .find(|(k, _)| k == key)
            .map_or_else(|| "(none)".to_string(), |(_, v)| v.clone());
        if &old_value == new_value {
            continue;
        }
        let mut live = is_live(key);
        if live && key.starts_with("listeners[") {
            let index = key["listeners[".len()..]
                .split(']')
                .next()
                .and_then(|i| i.parse::<usize>().ok());
            live = index.is_some_and(|i| {
                old.listeners.get(i).map(|l| l.bind) == new.listeners.get(i).map(|l| l.bind)
            });
        }
        changes.push(Change {
            key: key.clone(),
            old: old_value,
            new: new_value.clone(),
            live,
        });
    }
    // The token is never shown: a new one in the same file is reported by the file's name.
    if let (Some(old_token), Some(new_token)) =
        (&old.monitor.metrics_token, &new.monitor.metrics_token)
        && old_token.path() == new_token.path()
        && old_token != new_token
    {
        let path = new_token.path().display().to_string();
        changes.push(Change {
            key: "monitoring.token_file".into(),
            new: format!("{path} (a new token in it)"),
            old: path,
            live: false,
        });
    }
    for (key, old_value) in &before {
        if !after.iter().any(|(k, _)| k == key) {
            changes.push(Change {
                key: key.clone(),
                old: old_value.clone(),
                new: "(none)".to_string(),
                live: false,
            });
        }
    }
    changes
}

/// `old` with every live change of `new` applied: what runs after a reload. Keys that need
/// a restart keep their old values (so a later reload reports them again).
pub fn apply_live(old: &Settings, new: &Settings) -> Settings {
    let mut next = old.clone();
    next.log_level = new.log_level;
    next.shutdown_timeout_ms = new.shutdown_timeout_ms;
    next.max_connections_per_ip = new.max_connections_per_ip;
    next.core = new.core.clone();
    next.max_connections_configured = new.max_connections_configured;
    next.pool_preset = new.pool_preset;
    next.pool_initial_objects = new.pool_initial_objects;
    next.pool_max_preheated_objects = new.pool_max_preheated_objects;
    // The pools are per loop: size them for the loops that run, not a new loop count.
    next.core = match next.core_config(next.core.max_connections) {
        Ok((core, _)) => core,
        Err(_) => crate::core::CoreConfig {
            pool: old.core.pool.clone(),
            ..next.core
        },
    };
    for (i, listener) in next.listeners.iter_mut().enumerate() {
        if let Some(updated) = new.listeners.get(i)
            && updated.bind == listener.bind
        {
            listener.max_connections = updated.max_connections;
            listener.access = updated.access.clone();
        }
    }
    next
}
