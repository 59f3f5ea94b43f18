//! The configuration file against the real binary: `--check-config` on each kind of bad
//! file (the example file: `startup_binary.rs`), a broker started from a file with two listeners, and flags over
//! the file.

mod server_common;

use std::process::Command;

use server_common::{Broker, Client, TempConfig, free_port};

/// Runs `starling --check-config FILE` with `text` as the file; exit code and stderr.
fn check(text: &str) -> (Option<i32>, String) {
    let config = TempConfig::new("check", text);
    let output = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["--check-config", &config.arg()])
        .output()
        .expect("run the binary");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_empty_file_is_valid() {
    assert_eq!(check("").0, Some(0));
}

#[test]
fn each_kind_of_bad_config_names_key_line_column_and_what_is_allowed() {
    let cases: [(&str, &str, &[&str]); 6] = [
        (
            "unknown key",
            "[limits]\nmax_connections = 5\nmax_conections = 5\n",
            &[
                ":3:1:",
                "`limits.max_conections`",
                "unknown",
                "max_connections_per_ip",
            ],
        ),
        (
            "unknown section",
            "[limitz]\nmax_connections = 5\n",
            &[":1:", "`limitz`", "unknown", "`limits`"],
        ),
        (
            "wrong type",
            "[server]\nshutdown_timeout_ms = \"soon\"\n",
            &[
                ":2:23:",
                "`server.shutdown_timeout_ms`",
                "invalid type",
                "0..=86400000",
            ],
        ),
        (
            "out of range",
            "[limits]\nmax_packet_size_bytes = 3\n",
            &[":2:25:", "`limits.max_packet_size_bytes`", "14..=268435460"],
        ),
        (
            "bad address",
            "[[listeners]]\nbind = \"127.0.0.1\"\n",
            &[":2:8:", "`listeners[0].bind`", "IP:PORT"],
        ),
        (
            "bad combination",
            "[pool]\ninitial_objects = 500\nmax_preheated_objects = 100\n",
            &[":2:1:", "`pool.initial_objects`", "must not exceed"],
        ),
    ];
    for (what, text, expected) in cases {
        let (code, stderr) = check(text);
        assert_eq!(code, Some(2), "{what}: {stderr}");
        for needle in expected {
            assert!(
                stderr.contains(needle),
                "{what}: {needle:?} not in {stderr}"
            );
        }
    }
}

#[test]
fn a_bad_file_at_start_exits_2_without_listening() {
    let config = TempConfig::new("start", "[limits]\nmax_topic_levels = 0\n");
    let output = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["--config", &config.arg()])
        .output()
        .expect("run the binary");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("`limits.max_topic_levels`"), "{stderr}");
}

#[test]
fn a_missing_file_is_an_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["--check-config", "/nonexistent/starling.toml"])
        .output()
        .expect("run the binary");
    assert_eq!(output.status.code(), Some(2));
}

/// Two listeners from the file, each with its own limit; a flag overrides a file key.
#[test]
fn a_file_with_two_listeners_and_a_flag_over_it() {
    let second = free_port();
    let config = std::sync::Mutex::new(None::<TempConfig>);
    let broker = Broker::start_with(&["--max-connections", "10"], |addr| {
        let text = format!(
            "[server]\nevent_loops = 2\n\
             [[listeners]]\nbind = \"{addr}\"\n\
             [[listeners]]\nbind = \"127.0.0.1:{second}\"\nmax_connections = 1\n\
             [limits]\nmax_connections = 1\n"
        );
        let file = TempConfig::new("listeners", &text);
        let args = vec!["--config".to_string(), file.arg()];
        *config.lock().expect("lock") = Some(file);
        args
    });
    // The file says 1 connection; the flag says 10: three clients get in.
    let a = Client::connected(&broker, "first");
    let b = Client::connected(&broker, "second");
    let second_addr = format!("127.0.0.1:{second}").parse().expect("address");
    let (c, code) = Client::connect_addr(&broker, second_addr, "third");
    assert_eq!(code, 0);
    // The second listener holds its one connection: the next is closed at accept.
    let mut refused = Client::open_addr(second_addr);
    refused.expect_closed();
    broker.wait_log("connection refused at accept", 1);
    for mut client in [a, b, c] {
        client.ping();
        client.disconnect();
    }
}
