//! The HTTP upgrade: subprotocols, paths, origins, malformed and oversized requests, requests
//! in pieces and with frames behind them.

use super::*;

#[test]
fn upgrade_with_the_mqtt_subprotocol() {
    let mut layer = layer();
    assert!(!layer.upgraded());
    let (_, response) = connect(&mut layer, request("/mqtt", &["mqtt"])).expect("upgraded");
    assert_eq!(response.status().as_u16(), 101);
    assert_eq!(subprotocol_of(&response), Some("mqtt"));
    assert!(layer.upgraded());
    assert!(layer.wire_out().is_empty());
}

#[test]
fn mqtt_is_preferred_and_mqttv31_accepted() {
    for (offered, chosen) in [
        (&["mqttv3.1", "mqtt"][..], "mqtt"),
        (&["wamp", "mqtt"][..], "mqtt"),
        (&["mqttv3.1"][..], "mqttv3.1"),
        (&["wamp", "mqttv3.1"][..], "mqttv3.1"),
    ] {
        let mut layer = layer();
        let (_, response) = connect(&mut layer, request("/mqtt", offered)).expect("upgraded");
        assert_eq!(subprotocol_of(&response), Some(chosen), "{offered:?}");
    }
}

#[test]
fn no_subprotocol_header_is_accepted_without_one() {
    let mut layer = layer();
    let (_, response) = connect(&mut layer, request("/mqtt", &[])).expect("upgraded");
    assert_eq!(subprotocol_of(&response), None);
    assert!(layer.upgraded());
}

#[test]
fn only_other_subprotocols_are_refused() {
    let mut layer = layer();
    let refused = connect(&mut layer, request("/mqtt", &["wamp", "MQTT"])).err();
    let Some((status, Some(error))) = refused else {
        panic!("{refused:?}");
    };
    assert_eq!(status, Some(400));
    assert_eq!(error.label(), "no_mqtt_subprotocol");
    assert!(error.to_string().contains("wamp, MQTT"), "{error}");
    assert!(!layer.upgraded());
    let mut mqtt = Vec::new();
    assert_eq!(layer.read_wire(b"more", &mut mqtt), Err(WsError::Closed));
}

#[test]
fn wrong_path_is_404_and_a_query_string_is_fine() {
    let mut layer = layer();
    let refused = connect(&mut layer, request("/ws", &["mqtt"])).err();
    assert_eq!(
        refused,
        Some((Some(404), Some(WsError::WrongPath("/ws".into()))))
    );
    let mut layer = self::layer();
    connect(&mut layer, request("/mqtt?client=7", &["mqtt"])).expect("upgraded");
    let mut layer = layer_with(WsSettings {
        path: "/".into(),
        ..WsSettings::default()
    });
    connect(&mut layer, request("/", &["mqtt"])).expect("upgraded at /");
}

#[test]
fn origins() {
    let settings = Arc::new(WsSettings {
        allowed_origins: vec!["https://app.example.com".into()],
        ..WsSettings::default()
    });
    let with_origin = |origin: &str| request("/mqtt", &["mqtt"]).with_header("Origin", origin);
    let mut layer = WsLayer::new(Arc::clone(&settings));
    connect(&mut layer, with_origin("https://app.example.com")).expect("an allowed origin");
    for bad in [
        "https://evil.example.com",
        "https://app.example.com:8443",
        "null",
    ] {
        let mut layer = WsLayer::new(Arc::clone(&settings));
        let refused = connect(&mut layer, with_origin(bad)).err();
        assert_eq!(
            refused,
            Some((Some(403), Some(WsError::ForbiddenOrigin(bad.into())))),
            "{bad}"
        );
    }
    // No Origin: not a browser, accepted.
    let mut layer = WsLayer::new(settings);
    connect(&mut layer, request("/mqtt", &["mqtt"])).expect("no origin");
    // No list: any origin.
    let mut layer = self::layer();
    connect(&mut layer, with_origin("https://anywhere.example")).expect("any origin");
}

#[test]
fn not_an_upgrade_is_400() {
    let cases: Vec<(String, &str)> = vec![
        (raw_request("/mqtt", "").replace("GET", "POST"), "POST"),
        (
            "\x10\x10\x00\x04MQTT\x04\x02\x00\x3c".into(),
            "a plain MQTT CONNECT",
        ),
        ("\x16\x03\x01\x02\x00\x01".into(), "a TLS ClientHello"),
        (
            "GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            "no upgrade headers",
        ),
        (
            raw_request("/mqtt", "").replace("HTTP/1.1", "HTTP/1.0"),
            "HTTP/1.0",
        ),
        (raw_request("/mqtt", "").replace(KEY, "short"), "a bad key"),
        (
            raw_request("/mqtt", "").replace(": 13", ": 8"),
            "another version",
        ),
        (
            "GET /mqtt HTTP/1.1\r\nBad Header\r\n\r\n".into(),
            "a malformed header",
        ),
        ("GET \x01 HTTP/1.1\r\n\r\n".into(), "garbage"),
    ];
    for (request, what) in cases {
        let mut layer = layer();
        let (result, response) = feed_raw(&mut layer, request.as_bytes());
        let error = result.expect_err(what);
        assert_eq!(error.label(), "bad_upgrade", "{what}: {error}");
        assert!(
            status_line(&response).starts_with("HTTP/1.1 400"),
            "{what}: {response}"
        );
        assert!(response.contains("connection: close"), "{what}: {response}");
        assert!(!layer.upgraded());
    }
}

#[test]
fn refusal_comes_as_soon_as_the_request_cannot_be_a_get() {
    let mut layer = layer();
    let mut mqtt = Vec::new();
    assert_eq!(layer.read_wire(b"GE", &mut mqtt), Ok(()));
    let (result, response) = feed_raw(&mut layer, b"X");
    assert!(matches!(result, Err(WsError::BadRequest(_))));
    assert!(status_line(&response).starts_with("HTTP/1.1 400"));
}

#[test]
fn too_large_a_request_is_431() {
    let padding = format!("X-Padding: {}\r\n", "a".repeat(MAX_UPGRADE_REQUEST_BYTES));
    let mut layer = layer();
    let (result, response) = feed_raw(&mut layer, raw_request("/mqtt", &padding).as_bytes());
    assert_eq!(result, Err(WsError::RequestTooLarge));
    assert!(
        status_line(&response).starts_with("HTTP/1.1 431"),
        "{response}"
    );
    // Just within the limit: accepted.
    let request = raw_request("/mqtt", "X-Padding: \r\n");
    let room = MAX_UPGRADE_REQUEST_BYTES - request.len();
    let padding = format!("X-Padding: {}\r\n", "a".repeat(room));
    let request = raw_request("/mqtt", &padding);
    assert_eq!(request.len(), MAX_UPGRADE_REQUEST_BYTES);
    let mut layer = self::layer();
    let (result, response) = feed_raw(&mut layer, request.as_bytes());
    assert_eq!(result, Ok(()));
    assert!(
        status_line(&response).starts_with("HTTP/1.1 101"),
        "{response}"
    );
}

#[test]
fn too_many_header_lines_are_400() {
    let lines: String = (0..=MAX_UPGRADE_HEADERS)
        .map(|i| format!("X-{i}: a\r\n"))
        .collect();
    let mut layer = layer();
    let (result, response) = feed_raw(&mut layer, raw_request("/mqtt", &lines).as_bytes());
    assert!(matches!(result, Err(WsError::BadRequest(_))), "{result:?}");
    assert!(status_line(&response).starts_with("HTTP/1.1 400"));
}

#[test]
fn the_request_fed_a_byte_at_a_time() {
    let mut attempt = tungstenite::client::client(request("/mqtt", &["mqtt"]), Pipe::default());
    let Err(HandshakeError::Interrupted(mut mid)) = attempt else {
        panic!("the client waits for the response");
    };
    let pipe = mid.get_mut().get_mut();
    let request = std::mem::take(&mut pipe.to_server);
    let mut layer = layer();
    let mut mqtt = Vec::new();
    for (i, byte) in request.iter().enumerate() {
        assert!(layer.wire_out().is_empty(), "answered after {i} bytes");
        assert_eq!(layer.read_wire(&[*byte], &mut mqtt), Ok(()));
    }
    assert!(layer.upgraded());
    pipe.from_server.extend(take_out(&mut layer));
    attempt = mid.handshake();
    let Ok((mut client, response)) = attempt else {
        panic!("{attempt:?}");
    };
    assert_eq!(subprotocol_of(&response), Some("mqtt"));
    // The first frame, a byte at a time too.
    client.send(binary(CONNECT)).expect("sent");
    for byte in std::mem::take(&mut client.get_mut().to_server) {
        assert_eq!(layer.read_wire(&[byte], &mut mqtt), Ok(()));
    }
    assert_eq!(mqtt, CONNECT);
}

#[test]
fn frames_right_behind_the_request_are_read() {
    let mut request = raw_request("/mqtt", "Sec-WebSocket-Protocol: mqtt\r\n").into_bytes();
    request.extend(bin(CONNECT));
    request.extend(bin(PINGREQ));
    let mut layer = layer();
    let mut mqtt = Vec::new();
    assert_eq!(layer.read_wire(&request, &mut mqtt), Ok(()));
    assert_eq!(mqtt, [CONNECT, PINGREQ].concat());
    let response = String::from_utf8_lossy(layer.wire_out()).into_owned();
    assert!(
        status_line(&response).starts_with("HTTP/1.1 101"),
        "{response}"
    );
    assert!(
        response.ends_with("\r\n\r\n"),
        "nothing but the response: {response}"
    );
}
