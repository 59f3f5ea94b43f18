//! `--check-config` and start-up against the real binary: they make the same checks, the
//! open-file limit included, so a file that passes the check starts (the example file, and
//! the example with every commented key turned on) and a file start-up refuses fails the
//! check with the same message. Also the start-up log: a `max_connections` lowered to the
//! open-file ceiling is a warning only when the operator set it, and each listener's line
//! shows its own limit.

mod server_common;

use std::process::Output;
use std::sync::Mutex;
use std::time::Duration;

use server_common::{Broker, Client, TempConfig, free_port, starling_command};
use starling::config::example;

/// An open-file limit the tests pin, so that what is lowered does not depend on the limit
/// the tests were started with. With 2 loops and 2 listeners it leaves 7 480 connections,
/// 4 048 pool objects per loop.
const OPEN_FILES: u64 = 8192;

/// How long a graceful shutdown of an idle broker may take.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The example file as shipped, at the repository root.
fn example_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../starling.example.toml");
    std::fs::read_to_string(path).expect("read starling.example.toml")
}

/// `text` with the example's addresses moved to free loopback ports: the listener to
/// `addr`, the operators' listener and the metrics endpoint to ports of their own.
fn on_free_ports(text: &str, addr: &str) -> String {
    let replaced = text
        .replace("\"127.0.0.1:1883\"", &format!("\"{addr}\""))
        .replace(
            "\"127.0.0.1:1884\"",
            &format!("\"127.0.0.1:{}\"", free_port()),
        )
        .replace(
            "\"127.0.0.1:9464\"",
            &format!("\"127.0.0.1:{}\"", free_port()),
        );
    assert_ne!(replaced, text, "the example's addresses moved");
    replaced
}

/// The token file the example names, as the example with every key set needs it to exist.
const EXAMPLE_TOKEN_FILE: &str = "/etc/starling/metrics-token";

/// `text` with the example's token file replaced by `token` (a file that exists).
fn with_token_file(text: &str, token: &TempConfig) -> String {
    let replaced = text.replace(EXAMPLE_TOKEN_FILE, &token.arg());
    assert_ne!(replaced, text, "the example names {EXAMPLE_TOKEN_FILE}");
    replaced
}

/// `starling --check-config FILE` under `open_files`.
fn check_config(open_files: Option<u64>, file: &TempConfig) -> Output {
    starling_command(open_files)
        .args(["--check-config", &file.arg()])
        .output()
        .expect("run the binary")
}

/// Starts the binary from the file `text(addr)` makes (addr: its free loopback address)
/// under `open_files`; the file is kept for as long as the broker runs.
fn start_from_file(
    open_files: Option<u64>,
    args: &[&str],
    text: impl Fn(&str) -> String,
) -> (Broker, TempConfig) {
    let made: Mutex<Option<TempConfig>> = Mutex::new(None);
    let broker = Broker::start_limited(
        open_files,
        args,
        |addr| {
            let file = TempConfig::new("startup", &text(&addr.to_string()));
            let arg = file.arg();
            *made.lock().expect("lock") = Some(file);
            vec!["--config".to_string(), arg]
        },
        Some("info"),
    );
    let file = made.into_inner().expect("lock").expect("the file was made");
    (broker, file)
}

/// The check passes (exit 0, "valid" with the fitted figures on stdout); its stdout.
fn assert_valid(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(": valid ("), "{stdout}");
    assert!(stdout.contains("live at most"), "{stdout}");
    stdout
}

/// A client gets in, then SIGTERM ends the broker with status 0.
fn serves_then_stops(mut broker: Broker) {
    Client::connected(&broker, "startup-check").disconnect();
    broker.signal("TERM");
    assert_eq!(
        broker.wait_exit(EXIT_TIMEOUT),
        Some(0),
        "{}",
        broker.log_text()
    );
}

#[test]
fn the_example_config_passes_check_config_and_starts() {
    let text = example_text();
    // The open-file limit the tests run with, whatever it is: the example sets no pool size
    // that could fail to fit it.
    let (broker, file) = start_from_file(None, &[], |addr| on_free_ports(&text, addr));
    assert_valid(&check_config(None, &file));
    assert!(broker.log_text().contains("listening"));
    serves_then_stops(broker);
}

#[test]
fn the_example_with_every_key_set_passes_check_config_and_starts() {
    let token = TempConfig::new("token", "example-token\n");
    let mut text = with_token_file(&example::uncommented(&example_text()), &token);
    // The example's password and ACL files: empty ones of the test's own.
    let dir = std::env::temp_dir().join(format!("starling-every-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for name in ["passwords", "acl"] {
        let path = dir.join(name);
        std::fs::write(&path, "").expect("empty file");
        let shown = format!("\"/etc/starling/{name}\"");
        text = text.replace(&shown, &format!("{:?}", path.display().to_string()));
    }
    // The example's certificate, key and client CA: a self-signed certificate of the test's
    // own (it is its own CA).
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .and_then(|params| params.self_signed(&key))
        .expect("certificate");
    for (name, pem) in [
        ("server.crt", cert.pem()),
        ("server.key", key.serialize_pem()),
        ("clients-ca.crt", cert.pem()),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("PEM file");
        let shown = format!("\"/etc/starling/tls/{name}\"");
        assert!(text.contains(&shown), "the example names {shown}");
        text = text.replace(&shown, &format!("{:?}", path.display().to_string()));
    }
    // The example's store: a directory of the test's own.
    let store = dir.join("store");
    assert!(
        text.contains("\"/var/lib/starling\""),
        "the example names its store"
    );
    let text = text.replace(
        "\"/var/lib/starling\"",
        &format!("{:?}", store.display().to_string()),
    );
    let text = text.replace(
        "\"127.0.0.1:8443\"",
        &format!("\"127.0.0.1:{}\"", free_port()),
    );
    let (broker, file) = start_from_file(Some(OPEN_FILES), &[], |addr| on_free_ports(&text, addr));
    let stdout = assert_valid(&check_config(Some(OPEN_FILES), &file));
    assert!(
        stdout.contains("3 listener(s), 2 event loop(s)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(10000 lowered to what this process's 8192 open files allow)"),
        "{stdout}"
    );
    // The file's own max_connections (10 000) is above what 8 192 descriptors carry.
    assert!(
        broker.log_shows("WARN starling::config::host: limits.max_connections lowered"),
        "{}",
        broker.log_text()
    );
    serves_then_stops(broker);
}

#[test]
fn a_file_start_up_refuses_fails_check_config_with_the_same_message() {
    // Valid for the default million connections; not once they are lowered to what 8 192
    // descriptors carry (each loop's pool then holds at most 4 048 objects).
    let text = format!(
        "[server]\nevent_loops = 2\n[[listeners]]\nbind = \"127.0.0.1:{}\"\n\
         [pool]\nmax_preheated_objects = 100000\n",
        free_port()
    );
    let file = TempConfig::new("refused", &text);
    let checked = check_config(Some(OPEN_FILES), &file);
    let started = starling_command(Some(OPEN_FILES))
        .args(["--config", &file.arg()])
        .output()
        .expect("run the binary");
    let check_error = String::from_utf8_lossy(&checked.stderr);
    let start_error = String::from_utf8_lossy(&started.stderr);
    assert_eq!(checked.status.code(), Some(2), "{check_error}");
    assert_eq!(started.status.code(), Some(2), "{start_error}");
    assert_eq!(check_error, start_error, "one message for both");
    for needle in [
        ":6:1: key `pool.max_preheated_objects`",
        "must not exceed",
        "lowered to the open-file ceiling",
    ] {
        assert!(
            check_error.contains(needle),
            "{needle:?} not in {check_error}"
        );
    }
    assert!(checked.stdout.is_empty() && started.stdout.is_empty());
}

#[test]
fn a_lowered_max_connections_is_a_warning_only_when_the_operator_set_it() {
    let lowered_warning = "WARN starling::config::host: limits.max_connections lowered";
    let lowered_info = "INFO starling::config::host: max_connections is the open-file ceiling";
    let cases: [(&[&str], Option<&str>); 3] = [
        // The default (a million) lowered: information.
        (&[], Some(lowered_info)),
        // The operator's own value lowered: a warning.
        (&["--max-connections", "1000000"], Some(lowered_warning)),
        // Nothing lowered: neither.
        (&["--max-connections", "100"], None),
    ];
    for (args, expected) in cases {
        let broker = Broker::start_limited(
            Some(OPEN_FILES),
            args,
            |addr| vec!["--listen".to_string(), addr.to_string()],
            Some("info"),
        );
        let log = broker.log_text();
        for line in [lowered_warning, lowered_info] {
            assert_eq!(
                log.contains(line),
                expected == Some(line),
                "{args:?}: {log}"
            );
        }
    }
}

#[test]
fn each_listener_line_shows_its_own_limit() {
    let second = free_port();
    let broker = Broker::start_with(&[], |addr| {
        vec![
            "--listen".to_string(),
            addr.to_string(),
            "--listen".to_string(),
            format!("127.0.0.1:{second},max_connections=7"),
        ]
    });
    let log = broker.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" starling: listening "))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines[0].contains(&format!("addr={}", broker.addr))
            && lines[0].ends_with("listener_max_connections=none"),
        "{log}"
    );
    assert!(
        lines[1].contains(&format!("addr=127.0.0.1:{second}"))
            && lines[1].ends_with("listener_max_connections=7"),
        "{log}"
    );
}

#[test]
fn check_config_reads_the_tls_files_as_start_up_does() {
    let text = format!(
        "[[listeners]]\nbind = \"127.0.0.1:{}\"\nprotocol = \"tls\"\n\
         cert_file = \"/nonexistent/server.crt\"\nkey_file = \"/nonexistent/server.key\"\n",
        free_port()
    );
    let file = TempConfig::new("tls-missing", &text);
    let checked = check_config(None, &file);
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("/nonexistent/server.crt"), "{stderr}");
}
