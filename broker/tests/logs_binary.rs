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
