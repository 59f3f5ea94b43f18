//! What the broker logs, as an operator reads it, against the real binary: `--log-format
//! json` writes one JSON object per line, with the level, the target, the message and every
//! field.

mod server_common;

use server_common::{Broker, Client};

#[test]
fn json_logs_are_one_object_per_line_with_message_and_fields() {
    let broker = Broker::start(&["--log-format", "json", "--metrics-listen", "off"]);
    let mut client = Client::connected(&broker, "json-logged");
    client.ping();
    drop(client);
    broker.wait_log("\"message\":\"listening\"", 1);
    let text = broker.log_text();
    let mut listening = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let object: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(object["timestamp"].is_string(), "{line}");
        assert!(object["level"].is_string(), "{line}");
        assert!(object["target"].is_string(), "{line}");
        assert!(object["fields"]["message"].is_string(), "{line}");
        if object["fields"]["message"] == "listening" {
            listening = Some(object);
        }
    }
    let listening = listening.expect("a listening line");
    assert_eq!(listening["level"], "INFO");
    assert_eq!(listening["fields"]["addr"], broker.addr.to_string());
}

#[test]
fn text_logs_stay_the_default() {
    let broker = Broker::start(&["--metrics-listen", "off"]);
    broker.wait_log("listening", 1);
    let text = broker.log_text();
    assert!(text.lines().all(|l| !l.starts_with('{')), "{text}");
    assert!(text.contains(" INFO "), "{text}");
}

/// The log line of `broker` that contains every one of `needles`, waiting for it.
fn line_with(broker: &Broker, needles: &[&str]) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let text = broker.log_text();
        if let Some(line) = text
            .lines()
            .find(|line| needles.iter().all(|needle| line.contains(needle)))
        {
            return line.to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no line with {needles:?} in:\n{text}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn connects_and_closes_are_logged_at_info_with_client_peer_and_reason() {
    let broker = Broker::start_info(&["--metrics-listen", "off"], None);
    // A connect: client id, peer address, protocol, keep-alive and session settings.
    let client = Client::connected(&broker, "logged-1");
    let peer = client.local_addr().to_string();
    let line = line_with(&broker, &["client connected", "client=logged-1"]);
    for field in [
        &format!("peer={peer}") as &str,
        "protocol=3.1.1",
        "keep_alive_secs=60",
        "clean_start=true",
        "session_expiry_secs=0",
        "session_present=false",
        " INFO ",
    ] {
        assert!(line.contains(field), "{field} in {line}");
    }
    // A client DISCONNECT, with its reason code.
    client.disconnect();
    line_with(
        &broker,
        &[
            "client disconnected (DISCONNECT)",
            "client=logged-1",
            "code=0",
        ],
    );
    // A connection lost without DISCONNECT: the client, its peer, and why.
    let lost = Client::connected(&broker, "logged-2");
    let peer = lost.local_addr().to_string();
    drop(lost);
    line_with(
        &broker,
        &[
            "connection lost",
            "client=\"logged-2\"",
            &format!("peer={peer}"),
            "reason=peer closed",
        ],
    );
    // A protocol error: the client and the reason code.
    let mut bad = Client::connected(&broker, "logged-3");
    bad.send(&[0x60, 0x02, 0x00, 0x01]); // PUBREL with flags 0000 (MQTT-3.6.1-1)
    bad.expect_closed();
    line_with(&broker, &["closing connection", "client=logged-3", "code="]);
}
