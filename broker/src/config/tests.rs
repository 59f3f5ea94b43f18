use super::reload::{apply_live, diff};
use super::*;
use std::path::PathBuf;

fn resolve(text: &str) -> Result<Settings, ConfigError> {
    let file = FileConfig::parse(text, "test.toml")?;
    Settings::resolve(&file, "test.toml", Some(text))
}

#[test]
fn an_empty_file_is_the_defaults() {
    let settings = resolve("").expect("empty is valid");
    assert_eq!(settings.listeners.len(), 1);
    assert_eq!(settings.shutdown_timeout_ms, DEFAULT_SHUTDOWN_TIMEOUT_MS);
    assert_eq!(settings.core.max_connections, DEFAULT_MAX_CONNECTIONS);
}

#[test]
fn the_example_file_is_the_defaults() {
    let settings = resolve(example::EXAMPLE_CONFIG).expect("the example is valid");
    assert_eq!(
        settings,
        resolve("").expect("defaults"),
        "the keys the example writes out are set to their defaults"
    );
}

/// The example with every key turned on, its password and ACL files made empty ones (and its
/// metrics token file a token) in a directory of the test's own.
fn example_with_every_key() -> (String, PathBuf) {
    let dir = std::env::temp_dir().join(format!("starling-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut text = example::uncommented(example::EXAMPLE_CONFIG);
    for name in ["passwords", "acl"] {
        let path = dir.join(name);
        std::fs::write(&path, "").expect("empty file");
        let shown = format!("\"/etc/starling/{name}\"");
        text = text.replace(&shown, &format!("{:?}", path.display().to_string()));
    }
    let token = dir.join("metrics-token");
    std::fs::write(&token, "example-token\n").expect("token file");
    let text = text.replace("/etc/starling/metrics-token", &token.display().to_string());
    (text, dir)
}

#[test]
fn the_example_with_every_key_set_is_valid_and_sets_them() {
    let (text, dir) = example_with_every_key();
    let settings = resolve(&text).expect("every example value is valid");
    std::fs::remove_dir_all(&dir).ok();
    let access = &settings.listeners[0].access;
    assert!(access.allow_anonymous, "the listener's own key wins");
    assert!(access.password_file.is_some() && access.acl_file.is_some());
    assert!(!settings.listeners[1].access.allow_anonymous, "[auth]'s");
    assert_eq!(
        settings.monitor.metrics_token.as_ref().map(|t| t.path()),
        Some(dir.join("metrics-token").as_path())
    );
    assert_eq!(settings.listeners.len(), 3);
    let wss = &settings.listeners[2].transport;
    assert!(wss.tls.as_ref().is_some_and(|t| t.use_identity_as_username));
    assert_eq!(
        wss.websocket.as_ref().map(|w| w.allowed_origins.len()),
        Some(1)
    );
    assert_eq!(settings.event_loops, 2);
    assert_eq!(settings.pool_preset, Some(PoolPreset::Small));
    assert!(settings.max_connections_configured);
    assert_eq!(settings.core.max_connections, 10_000);
}

#[test]
fn a_pool_key_above_the_lowered_share_is_refused() {
    let text = "[server]\nevent_loops = 2\n[pool]\nmax_preheated_objects = 100000\n";
    let settings = resolve(text).expect("valid for a million connections");
    assert!(!settings.max_connections_configured);
    let (key, message) = settings.fit(19_000).expect_err("above a loop's share");
    assert_eq!(key, "pool.max_preheated_objects");
    assert!(
        message.contains("lowered to the open-file ceiling 19000"),
        "{message}"
    );
    let fitted = resolve("[server]\nevent_loops = 2\n")
        .expect("valid")
        .fit(19_000)
        .expect("preset values are lowered to fit");
    assert!(fitted.lowered());
    assert_eq!(fitted.settings.core.max_connections, 19_000);
    assert!(
        fitted.settings.core.pool.max_preheated_objects
            <= fitted.settings.core.pool.max_live_objects
    );
}

#[test]
fn unknown_keys_name_the_key_and_position() {
    let error = resolve("[limits]\nmax_conections = 5\n").expect_err("typo");
    assert_eq!(
        error.key.as_deref(),
        Some("limits.max_conections"),
        "{error}"
    );
    assert_eq!(error.position, Some((2, 1)), "{error}");
    assert!(error.message.contains("max_connections"), "{error}");
    let error = resolve("bogus = 1\n").expect_err("unknown top-level key");
    assert_eq!(error.key.as_deref(), Some("bogus"), "{error}");
}

#[test]
fn type_and_range_errors_say_what_is_allowed() {
    let error = resolve("[limits]\nmax_connections = \"many\"\n").expect_err("type");
    assert_eq!(
        error.key.as_deref(),
        Some("limits.max_connections"),
        "{error}"
    );
    assert_eq!(error.position, Some((2, 19)), "{error}");
    let error = resolve("[limits]\nmax_connections = 0\n").expect_err("range");
    assert!(error.message.contains("1..=4294967295"), "{error}");
    let error = resolve("[limits]\nmax_topic_levels = -3\n").expect_err("negative");
    assert!(error.message.contains("1..=256"), "{error}");
}

#[test]
fn bad_listeners_are_refused() {
    let error = resolve("[[listeners]]\nbind = \"localhost:1883\"\n").expect_err("not an IP");
    assert_eq!(error.key.as_deref(), Some("listeners[0].bind"), "{error}");
    assert_eq!(error.position.map(|p| p.0), Some(2), "{error}");
    let error = resolve("[[listeners]]\nbind = \"127.0.0.1:1\"\nprotocol = \"quic\"\n")
        .expect_err("no such protocol");
    assert_eq!(
        error.key.as_deref(),
        Some("listeners[0].protocol"),
        "{error}"
    );
    let error = resolve("[[listeners]]\nbind = \"127.0.0.1:1\"\nprotocol = \"tls\"\n")
        .expect_err("TLS without a certificate");
    assert_eq!(
        error.key.as_deref(),
        Some("listeners[0].cert_file"),
        "{error}"
    );
    let twice = "[[listeners]]\nbind = \"127.0.0.1:1\"\n[[listeners]]\nbind = \"127.0.0.1:1\"\n";
    let error = resolve(twice).expect_err("duplicate");
    assert_eq!(error.position, Some((4, 1)), "{error}");
}

#[test]
fn pool_relations_point_at_the_key() {
    let text = "[pool]\ninitial_objects = 500\nmax_preheated_objects = 100\n";
    let error = resolve(text).expect_err("initial above the cap");
    assert_eq!(
        error.key.as_deref(),
        Some("pool.initial_objects"),
        "{error}"
    );
    assert_eq!(error.position, Some((2, 1)), "{error}");
}

#[test]
fn presets_are_overridden_key_by_key() {
    let settings = resolve("[pool]\npreset = \"small\"\n").expect("valid");
    assert_eq!(settings.core.max_connections, 10_000);
    assert_eq!(settings.core.pool.initial_objects, 256);
    let settings = resolve(
        "[pool]\npreset = \"small\"\ninitial_objects = 300\n[limits]\nmax_connections = 20000\n",
    )
    .expect("valid");
    assert_eq!(settings.core.max_connections, 20_000);
    assert_eq!(settings.core.pool.initial_objects, 300);
    assert_eq!(settings.core.pool.max_preheated_objects, 10_000);
}

#[test]
fn flags_override_the_file() {
    let file = FileConfig::parse("[limits]\nmax_connections = 5\nmax_topic_levels = 9\n", "f")
        .expect("valid");
    let mut flags = FileConfig::default();
    flags.limits.max_connections = Some(file::Connections::new(7).expect("in range"));
    let settings = Settings::resolve(&file.overlay(&flags), "f", None).expect("valid");
    assert_eq!(settings.core.max_connections, 7);
    assert_eq!(settings.core.max_topic_levels, 9);
}

#[test]
fn a_reload_applies_limits_and_reports_restart_keys() {
    let old =
        resolve("[server]\nevent_loops = 2\n[limits]\nmax_connections = 100\n").expect("valid");
    let new =
        resolve("[server]\nevent_loops = 3\n[limits]\nmax_connections = 50\n").expect("valid");
    let changes = diff(&old, &new);
    let keys: Vec<(&str, bool)> = changes.iter().map(|c| (c.key.as_str(), c.live)).collect();
    assert!(keys.contains(&("server.event_loops", false)), "{keys:?}");
    assert!(keys.contains(&("limits.max_connections", true)), "{keys:?}");
    let next = apply_live(&old, &new);
    assert_eq!(next.core.max_connections, 50);
    assert_eq!(next.event_loops, 2);
    assert_eq!(
        next.core.pool.max_live_objects,
        sizing::max_live_objects_per_loop(50, 2),
        "the pools follow max_connections, sized for the loops that run"
    );
    assert!(
        keys.iter()
            .all(|(k, live)| !k.starts_with("pool.") || *live)
    );
}

#[test]
fn monitoring_keys_take_an_address_or_off_and_an_interval() {
    let settings = resolve("").expect("defaults");
    assert_eq!(
        settings.monitor.metrics_listen,
        "127.0.0.1:9464".parse().ok()
    );
    assert_eq!(settings.monitor.sys_interval_secs, 10);
    let settings = resolve("[monitoring]\nmetrics_listen = \"off\"\nsys_interval_secs = 0\n")
        .expect("off and 0 are valid");
    assert_eq!(settings.monitor.metrics_listen, None);
    assert_eq!(settings.monitor.sys_interval_secs, 0);
    let error =
        resolve("[monitoring]\nmetrics_listen = \"localhost:9464\"\n").expect_err("no host names");
    assert_eq!(
        error.key.as_deref(),
        Some("monitoring.metrics_listen"),
        "{error}"
    );
    assert!(error.message.contains("off"), "{error}");
    let error = resolve("[monitoring]\nsys_interval_secs = 90000\n").expect_err("above a day");
    assert_eq!(error.position, Some((2, 21)), "{error}");
}

#[test]
fn linger_keys_from_file_and_flags_and_live_on_reload() {
    let defaults = resolve("").expect("empty is valid");
    assert_eq!(
        defaults.core.close_linger_timeout_ms,
        crate::core::config::DEFAULT_CLOSE_LINGER_TIMEOUT_MS
    );
    let text = "[limits]\nclose_linger_timeout_ms = 250\nclose_linger_max_bytes = 0\n";
    let settings = resolve(text).expect("valid");
    assert_eq!(settings.core.close_linger_timeout_ms, 250);
    assert_eq!(settings.core.close_linger_max_bytes, 0);
    let flags = FileConfig::parse("[limits]\nclose_linger_timeout_ms = 10\n", "flags")
        .expect("valid layer");
    let file = FileConfig::parse(text, "test.toml").expect("valid");
    let over = Settings::resolve(&file.overlay(&flags), "test.toml", Some(text)).expect("valid");
    assert_eq!(over.core.close_linger_timeout_ms, 10);
    let changes = diff(&defaults, &settings);
    for key in [
        "limits.close_linger_timeout_ms",
        "limits.close_linger_max_bytes",
    ] {
        assert!(
            changes.iter().any(|c| c.key == key && c.live),
            "{key} in {changes:?}"
        );
    }
    assert_eq!(
        apply_live(&defaults, &settings)
            .core
            .close_linger_timeout_ms,
        250
    );
}

#[test]
fn what_one_connection_may_pin_is_read_checked_and_reloaded_live() {
    let settings = resolve("").expect("defaults");
    let defaults = crate::core::CoreConfig::default();
    assert_eq!(
        settings.core.max_topic_alias_bytes,
        defaults.max_topic_alias_bytes
    );
    assert_eq!(
        settings.core.max_client_id_length_bytes,
        defaults.max_client_id_length_bytes
    );
    let old = resolve("[limits]\nmax_topic_alias_bytes = 1000\nmax_client_id_length_bytes = 64\n")
        .expect("valid");
    assert_eq!(old.core.max_topic_alias_bytes, 1000);
    assert_eq!(old.core.max_client_id_length_bytes, 64);
    let error = resolve("[limits]\nmax_client_id_length_bytes = 10\n")
        .expect_err("below the 23 bytes every server must accept");
    assert_eq!(
        error.key.as_deref(),
        Some("limits.max_client_id_length_bytes"),
        "{error}"
    );
    assert!(error.message.contains("23..=65535"), "{error}");
    let new = resolve("[limits]\nmax_topic_alias_bytes = 0\n").expect("0: no byte limit");
    let changes = diff(&old, &new);
    for key in [
        "limits.max_topic_alias_bytes",
        "limits.max_client_id_length_bytes",
    ] {
        assert!(
            changes.iter().any(|c| c.key == key && c.live),
            "{key} changes live: {changes:?}"
        );
    }
    let next = apply_live(&old, &new);
    assert_eq!(next.core.max_topic_alias_bytes, 0);
}

#[test]
fn the_partial_packet_timeout_resolves_validates_and_reloads_live() {
    let defaults = resolve("").expect("defaults");
    assert_eq!(
        defaults.core.partial_packet_timeout_ms,
        crate::core::config::DEFAULT_PARTIAL_PACKET_TIMEOUT_MS
    );
    let set = resolve("[limits]\npartial_packet_timeout_ms = 5000\n").expect("valid");
    assert_eq!(set.core.partial_packet_timeout_ms, 5000);
    let error = resolve("[limits]\npartial_packet_timeout_ms = 0\n").expect_err("0 is no bound");
    assert_eq!(
        error.key.as_deref(),
        Some("limits.partial_packet_timeout_ms"),
        "{error}"
    );
    let changes = diff(&defaults, &set);
    assert!(
        changes
            .iter()
            .any(|c| c.key == "limits.partial_packet_timeout_ms" && c.live && c.new == "5000"),
        "{changes:?}"
    );
    assert_eq!(
        apply_live(&defaults, &set).core.partial_packet_timeout_ms,
        5000
    );
}

/// A token file `name` holding `contents`, removed when dropped.
struct TokenFile(std::path::PathBuf);

impl TokenFile {
    fn new(name: &str, contents: &str) -> TokenFile {
        let path = std::env::temp_dir().join(format!(
            "starling-config-token-{name}-{}",
            std::process::id()
        ));
        std::fs::write(&path, contents).expect("temporary token file");
        TokenFile(path)
    }

    fn config(&self) -> String {
        format!(
            "[monitoring]\ntoken_file = {:?}\n",
            self.0.display().to_string()
        )
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_bad_token_file_is_refused_with_its_key_and_line() {
    let empty = TokenFile::new("empty", "\n");
    let error = resolve(&empty.config()).expect_err("an empty token");
    assert_eq!(error.key.as_deref(), Some("monitoring.token_file"));
    assert_eq!(error.position, Some((2, 1)));
    assert!(error.message.contains("is empty"), "{error}");
    let missing = "[monitoring]\ntoken_file = \"/nonexistent/starling-token\"\n";
    let error = resolve(missing).expect_err("no such file");
    assert!(
        error.message.contains("cannot read the token file"),
        "{error}"
    );
}

#[test]
fn a_new_token_in_the_same_file_needs_a_restart_and_is_never_shown() {
    let file = TokenFile::new("rotated", "first-token\n");
    let old = resolve(&file.config()).expect("valid");
    std::fs::write(&file.0, "second-token\n").expect("rewrite");
    let new = resolve(&file.config()).expect("valid");
    let changes = diff(&old, &new);
    assert_eq!(changes.len(), 1, "{changes:?}");
    assert_eq!(changes[0].key, "monitoring.token_file");
    assert!(!changes[0].live);
    assert!(changes[0].new.contains("a new token"), "{changes:?}");
    let shown = format!("{changes:?} {new:?}");
    assert!(
        !shown.contains("first-token") && !shown.contains("second-token"),
        "{shown}"
    );
    assert_eq!(apply_live(&old, &new).monitor, old.monitor, "restart only");
    let unset = resolve("").expect("defaults");
    let changes = diff(&unset, &old);
    assert!(
        changes
            .iter()
            .any(|c| c.key == "monitoring.token_file" && c.old == "none" && !c.live),
        "{changes:?}"
    );
}
