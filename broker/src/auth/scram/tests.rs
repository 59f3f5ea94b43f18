//! SCRAM-SHA-256: the RFC 7677 vector, refusals, malformed input, and a client written from
//! RFC 5802 (and, when the test virtualenv is there, scramp's).

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use proptest::prelude::*;

use super::*;
use crate::core::AuthStep;
use crate::protocol::ReasonCode;

const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

/// The RFC 7677 user's credentials (derived once: PBKDF2 is slow in a debug build).
fn rfc_credentials() -> ScramCredentials {
    static CREDENTIALS: std::sync::LazyLock<ScramCredentials> = std::sync::LazyLock::new(|| {
        let salt = BASE64.decode(RFC_SALT).expect("the RFC salt is base64");
        ScramCredentials::derive(b"pencil", &salt, 4096)
    });
    CREDENTIALS.clone()
}

/// PBKDF2 iterations for the property tests, which derive keys at every case (the
/// exchange does not check a count: only a stored verifier's is bounded).
const FAST_ITERATIONS: u32 = 2;

/// A lookup over `users` (name, credentials).
fn lookup(users: Vec<(&str, ScramCredentials)>) -> CredentialLookup {
    let users: HashMap<String, ScramCredentials> = users
        .into_iter()
        .map(|(name, credentials)| (name.to_owned(), credentials))
        .collect();
    Arc::new(move |name| users.get(name).cloned())
}

/// An authenticator knowing `user` (password `pencil`), with the RFC 7677 server nonce.
fn rfc_authenticator() -> ScramAuthenticator {
    let users = lookup(vec![("user", rfc_credentials())]);
    ScramAuthenticator::with_fixed_nonce(users, RFC_SERVER_NONCE)
}

fn continue_data(step: AuthStep) -> String {
    match step {
        AuthStep::Continue(data) => String::from_utf8(data).expect("server-first is UTF-8"),
        other => panic!("expected Continue, got {other:?}"),
    }
}

/// The field `name=` of a server message.
fn field<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .split(',')
        .find_map(|f| f.strip_prefix(name).and_then(|f| f.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {name}= in {message}"))
}

/// A client from RFC 5802 §3: the client-final-message answering `server_first` for
/// `password`, after `client_first` (whose GS2 header is `gs2_header`), and the
/// server-final-message it expects.
fn client_final(
    client_first: &str,
    gs2_header: &str,
    server_first: &str,
    password: &[u8],
) -> (String, String) {
    let salt = BASE64.decode(field(server_first, "s")).expect("salt");
    let iterations = field(server_first, "i").parse().expect("iterations");
    let salted: [u8; KEY_BYTES] =
        pbkdf2::pbkdf2_hmac_array::<sha2::Sha256, KEY_BYTES>(password, &salt, iterations);
    let client_key = hmac(&salted, &[b"Client Key"]);
    let stored_key = sha256(&client_key);
    let server_key = hmac(&salted, &[b"Server Key"]);
    let without_proof = format!(
        "c={},r={}",
        BASE64.encode(gs2_header),
        field(server_first, "r")
    );
    let bare = client_first
        .strip_prefix(gs2_header)
        .expect("client-first starts with its GS2 header");
    let auth_message = format!("{bare},{server_first},{without_proof}");
    let signature = hmac(&stored_key, &[auth_message.as_bytes()]);
    let proof: Vec<u8> = client_key
        .iter()
        .zip(signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let server_signature = hmac(&server_key, &[auth_message.as_bytes()]);
    (
        format!("{without_proof},p={}", BASE64.encode(proof)),
        format!("v={}", BASE64.encode(server_signature)),
    )
}

/// Runs a whole exchange as the RFC 5802 client above; the last step.
fn run(
    authenticator: &ScramAuthenticator,
    client_first: &str,
    gs2_header: &str,
    password: &[u8],
) -> (AuthStep, Option<String>, String) {
    let mut exchange = authenticator.begin("client-id");
    let server_first = continue_data(exchange.step(Some(client_first.as_bytes())));
    let (last, expected) = client_final(client_first, gs2_header, &server_first, password);
    let step = exchange.step(Some(last.as_bytes()));
    (step, exchange.identity().map(str::to_owned), expected)
}

#[test]
fn rfc7677_vector_byte_for_byte() {
    let authenticator = rfc_authenticator();
    assert_eq!(authenticator.method(), "SCRAM-SHA-256");
    let mut exchange = authenticator.begin("client-id");
    assert_eq!(exchange.identity(), None);
    let step = exchange.step(Some(RFC_CLIENT_FIRST.as_bytes()));
    assert_eq!(
        step,
        AuthStep::Continue(RFC_SERVER_FIRST.as_bytes().to_vec())
    );
    assert_eq!(exchange.identity(), None);
    let step = exchange.step(Some(RFC_CLIENT_FINAL.as_bytes()));
    assert_eq!(
        step,
        AuthStep::Success(Some(RFC_SERVER_FINAL.as_bytes().to_vec()))
    );
    assert_eq!(exchange.identity(), Some("user"));
    // Nothing after the end.
    assert_eq!(
        exchange.step(Some(RFC_CLIENT_FINAL.as_bytes())),
        AuthStep::Refuse(ReasonCode::UnspecifiedError)
    );
    assert_eq!(exchange.identity(), None);
}

#[test]
fn the_test_client_reproduces_the_rfc_vector() {
    let (last, expected) = client_final(RFC_CLIENT_FIRST, "n,,", RFC_SERVER_FIRST, b"pencil");
    assert_eq!(last, RFC_CLIENT_FINAL);
    assert_eq!(expected, RFC_SERVER_FINAL);
}

#[test]
fn stored_string_round_trip() {
    let credentials = rfc_credentials();
    let text = credentials.to_stored_string();
    assert!(text.starts_with("$scram-sha-256$4096$W22ZaJ0SNY7soEsUEjb6gQ==$"));
    assert_eq!(ScramCredentials::parse(&text), Some(credentials));
}

#[test]
fn parse_refuses_anything_else() {
    let key = BASE64.encode([7u8; KEY_BYTES]);
    let ok = |iterations: &str, salt: &[u8], stored: &str, server: &str| {
        format!(
            "$scram-sha-256${iterations}${}${stored}${server}",
            BASE64.encode(salt)
        )
    };
    assert!(ScramCredentials::parse(&ok("4096", b"salt", &key, &key)).is_some());
    assert!(ScramCredentials::parse(&ok("10000000", &[1; 64], &key, &key)).is_some());
    let short = BASE64.encode([7u8; KEY_BYTES - 1]);
    let long = BASE64.encode([7u8; KEY_BYTES + 1]);
    let unpadded = key.trim_end_matches('=');
    for bad in [
        ok("4095", b"salt", &key, &key),
        ok("10000001", b"salt", &key, &key),
        ok("+4096", b"salt", &key, &key),
        ok(" 4096", b"salt", &key, &key),
        ok("", b"salt", &key, &key),
        ok("99999999999999999999", b"salt", &key, &key),
        ok("4096", b"", &key, &key),
        ok("4096", &[1; 65], &key, &key),
        ok("4096", b"salt", &short, &key),
        ok("4096", b"salt", &key, &long),
        ok("4096", b"salt", unpadded, &key),
        ok("4096", b"salt", "not base64!", &key),
        ok("4096", b"salt", &key, &key) + "$",
        ok("4096", b"salt", &key, &key).replace("scram-sha-256", "SCRAM-SHA-256"),
        ok("4096", b"salt", &key, &key).replace("$scram", "scram"),
        format!("$scram-sha-256$4096$c2FsdA==${key}"),
        String::new(),
        "$".to_owned(),
        "$6$salt$hash".to_owned(),
    ] {
        assert_eq!(ScramCredentials::parse(&bad), None, "{bad}");
    }
}

#[test]
fn wrong_password_is_not_authorized() {
    let authenticator = rfc_authenticator();
    let (step, identity, _) = run(&authenticator, RFC_CLIENT_FIRST, "n,,", b"pencil!");
    assert_eq!(step, AuthStep::Refuse(ReasonCode::NotAuthorized));
    assert_eq!(identity, None);
    // A proof with one bit off.
    let mut exchange = authenticator.begin("client-id");
    continue_data(exchange.step(Some(RFC_CLIENT_FIRST.as_bytes())));
    let flipped = RFC_CLIENT_FINAL.replace("p=dHzb", "p=dHzc");
    let step = exchange.step(Some(flipped.as_bytes()));
    assert_eq!(step, AuthStep::Refuse(ReasonCode::NotAuthorized));
}

#[test]
fn random_nonces_and_a_full_exchange() {
    let users = lookup(vec![("user", rfc_credentials())]);
    let authenticator = ScramAuthenticator::new(users);
    let mut nonces = Vec::new();
    for _ in 0..2 {
        let mut exchange = authenticator.begin("client-id");
        let server_first = continue_data(exchange.step(Some(RFC_CLIENT_FIRST.as_bytes())));
        let nonce = field(&server_first, "r").to_owned();
        let server_nonce = nonce
            .strip_prefix("rOprNGfwEbeRWgbNEkqO")
            .expect("the nonce starts with the client's");
        assert_eq!(
            BASE64.decode(server_nonce).map(|n| n.len()),
            Ok(SERVER_NONCE_BYTES)
        );
        nonces.push(nonce);
        let (last, expected) = client_final(RFC_CLIENT_FIRST, "n,,", &server_first, b"pencil");
        assert_eq!(
            exchange.step(Some(last.as_bytes())),
            AuthStep::Success(Some(expected.into_bytes()))
        );
        assert_eq!(exchange.identity(), Some("user"));
    }
    assert_ne!(nonces[0], nonces[1]);
}

#[test]
fn unknown_user_gets_a_plausible_server_first_then_not_authorized() {
    let authenticator = rfc_authenticator();
    let first = "n,,n=nobody,r=abcdef";
    let server_first = |first: &str| {
        let mut exchange = authenticator.begin("client-id");
        continue_data(exchange.step(Some(first.as_bytes())))
    };
    let fake = server_first(first);
    assert_eq!(field(&fake, "r"), format!("abcdef{RFC_SERVER_NONCE}"));
    assert_eq!(field(&fake, "i"), DEFAULT_ITERATIONS.to_string());
    let salt = BASE64.decode(field(&fake, "s")).expect("base64 salt");
    assert_eq!(salt.len(), FAKE_SALT_BYTES);
    // The same salt every time for the same name, another for another name.
    assert_eq!(server_first(first), fake);
    let other = server_first("n,,n=nobody2,r=abcdef");
    assert_ne!(field(&other, "s"), field(&fake, "s"));
    // Refused at the final step, like a wrong password.
    for password in [&b"pencil"[..], b"", b"anything"] {
        let (step, identity, _) = run(&authenticator, first, "n,,", password);
        assert_eq!(step, AuthStep::Refuse(ReasonCode::NotAuthorized));
        assert_eq!(identity, None);
    }
}

#[test]
fn credentials_are_looked_up_at_each_exchange() {
    let current = Arc::new(std::sync::Mutex::new(None::<ScramCredentials>));
    let shared = Arc::clone(&current);
    let users: CredentialLookup = Arc::new(move |name| {
        let credentials = shared.lock().expect("not poisoned").clone();
        credentials.filter(|_| name == "user")
    });
    let authenticator = ScramAuthenticator::new(users);
    let (step, _, _) = run(&authenticator, RFC_CLIENT_FIRST, "n,,", b"pencil");
    assert_eq!(step, AuthStep::Refuse(ReasonCode::NotAuthorized));
    *current.lock().expect("not poisoned") = Some(rfc_credentials());
    let (step, identity, expected) = run(&authenticator, RFC_CLIENT_FIRST, "n,,", b"pencil");
    assert_eq!(step, AuthStep::Success(Some(expected.into_bytes())));
    assert_eq!(identity.as_deref(), Some("user"));
}

#[test]
fn gs2_headers_authzid_and_escaped_names() {
    let salt = b"0123456789abcdef";
    let users = lookup(vec![
        ("user", rfc_credentials()),
        ("a,b=c", ScramCredentials::derive(b"pw", salt, 4096)),
        (
            "héron",
            ScramCredentials::derive("mot dé passe".as_bytes(), salt, 4096),
        ),
    ]);
    let authenticator = ScramAuthenticator::new(users);
    for (first, header, password, who) in [
        ("y,,n=user,r=abc", "y,,", &b"pencil"[..], "user"),
        ("n,a=user,n=user,r=abc", "n,a=user,", b"pencil", "user"),
        ("n,,n=user,r=abc,x=ignored", "n,,", b"pencil", "user"),
        ("n,,n=a=2Cb=3Dc,r=abc", "n,,", b"pw", "a,b=c"),
        (
            "n,a=a=2Cb=3Dc,n=a=2Cb=3Dc,r=abc",
            "n,a=a=2Cb=3Dc,",
            b"pw",
            "a,b=c",
        ),
        (
            "n,,n=héron,r=abc",
            "n,,",
            "mot dé passe".as_bytes(),
            "héron",
        ),
    ] {
        let (step, identity, expected) = run(&authenticator, first, header, password);
        assert_eq!(
            step,
            AuthStep::Success(Some(expected.into_bytes())),
            "{first}"
        );
        assert_eq!(identity.as_deref(), Some(who), "{first}");
    }
}

/// Every malformed client-first-message is refused with 0x80, without a server-first.
#[test]
fn malformed_client_first_is_refused() {
    let authenticator = rfc_authenticator();
    let oversized = format!("n,,n=user,r={}", "x".repeat(MAX_SCRAM_MESSAGE_BYTES));
    let cases: Vec<Option<&[u8]>> = vec![
        None,
        Some(b""),
        Some(b"n"),
        Some(b"n,"),
        Some(b"n,,"),
        Some(b"n,,n=user"),
        Some(b"n,,n=user,"),
        Some(b"n,,n=user,r="),
        Some(b"n,,n=user,r=a b"),
        Some(b"n,,n=user,r=abc\x7f"),
        Some(b"n,,n=user,r=abc,"),
        Some(b"n,,n=user,r=abc,x"),
        Some(b"n,,n=user,r=abc,1=x"),
        Some(b"n,,n=user,r=abc,x="),
        Some(b"n,,r=abc,n=user"),
        Some(b"n,,m=ext,n=user,r=abc"),
        Some(b"n,,n=,r=abc"),
        Some(b"n,,n=us=er,r=abc"),
        Some(b"n,,n=us=2,r=abc"),
        Some(b"n,,n=user=,r=abc"),
        Some(b"n,,n=us\ter,r=abc"),
        Some(b"n,,n=us\0er,r=abc"),
        Some(b"n,,n=\xff,r=abc"),
        Some(b"p=tls-unique,,n=user,r=abc"),
        Some(b"x,,n=user,r=abc"),
        Some(b"N,,n=user,r=abc"),
        Some(b",,n=user,r=abc"),
        Some(b"n,a=other,n=user,r=abc"),
        Some(b"n,a=,n=user,r=abc"),
        Some(b"n,x=user,n=user,r=abc"),
        Some(b"n,user,n=user,r=abc"),
        Some(oversized.as_bytes()),
    ];
    for case in cases {
        let mut exchange = authenticator.begin("client-id");
        assert_eq!(
            exchange.step(case),
            AuthStep::Refuse(ReasonCode::UnspecifiedError),
            "{:?}",
            case.map(String::from_utf8_lossy)
        );
        assert_eq!(exchange.identity(), None);
        // And nothing after a refusal.
        assert_eq!(
            exchange.step(Some(RFC_CLIENT_FIRST.as_bytes())),
            AuthStep::Refuse(ReasonCode::UnspecifiedError)
        );
    }
    // The largest message accepted.
    let nonce = "x".repeat(MAX_SCRAM_MESSAGE_BYTES - "n,,n=user,r=".len());
    let largest = format!("n,,n=user,r={nonce}");
    let mut exchange = authenticator.begin("client-id");
    continue_data(exchange.step(Some(largest.as_bytes())));
}

/// Every malformed (or mismatched) client-final-message is refused with 0x80, the same for
/// a known and an unknown user.
#[test]
fn malformed_client_final_is_refused() {
    let authenticator = rfc_authenticator();
    let nonce = field(RFC_SERVER_FIRST, "r");
    let proof = field(RFC_CLIENT_FINAL, "p");
    let long_proof = BASE64.encode([0u8; KEY_BYTES + 1]);
    let short_proof = BASE64.encode([0u8; KEY_BYTES - 1]);
    let padding = "x".repeat(MAX_SCRAM_MESSAGE_BYTES);
    let cases: Vec<String> = vec![
        String::new(),
        "c=biws".to_owned(),
        format!("c=biws,r={nonce}"),
        format!("c=biws,r={nonce},p="),
        format!("c=biws,r={nonce},p={short_proof}"),
        format!("c=biws,r={nonce},p={long_proof}"),
        format!("c=biws,r={nonce},p=!!!!"),
        format!("c=biws,r={nonce},p={proof},"),
        format!("c=biws,r={nonce},p={proof},x=y"),
        format!("c=biws,r={nonce},q={proof}"),
        format!("c=biws,r={nonce}x,p={proof}"),
        format!("c=biws,r=rOprNGfwEbeRWgbNEkqO,p={proof}"),
        format!("c=biws,r=,p={proof}"),
        format!("c=eSws,r={nonce},p={proof}"),
        format!("c=biw,r={nonce},p={proof}"),
        format!("c=,r={nonce},p={proof}"),
        format!("r={nonce},c=biws,p={proof}"),
        format!("c=biws,p={proof}"),
        format!("c=biws,r={nonce},1=x,p={proof}"),
        format!("c=biws,r={nonce},x={padding},p={proof}"),
        format!("c=biws,r={nonce},p={proof}\0"),
    ];
    for first in [RFC_CLIENT_FIRST, "n,,n=nobody,r=rOprNGfwEbeRWgbNEkqO"] {
        for case in cases.iter().map(|c| Some(c.as_bytes())).chain([None]) {
            let mut exchange = authenticator.begin("client-id");
            continue_data(exchange.step(Some(first.as_bytes())));
            assert_eq!(
                exchange.step(case),
                AuthStep::Refuse(ReasonCode::UnspecifiedError),
                "{first} then {:?}",
                case.map(String::from_utf8_lossy)
            );
            assert_eq!(exchange.identity(), None);
        }
    }
    // Extensions before the proof are ignored (their text is part of the AuthMessage, so
    // the RFC proof no longer matches: refused as wrong credentials, not as malformed).
    let mut exchange = authenticator.begin("client-id");
    continue_data(exchange.step(Some(RFC_CLIENT_FIRST.as_bytes())));
    let extended = format!("c=biws,r={nonce},x=y,p={proof}");
    assert_eq!(
        exchange.step(Some(extended.as_bytes())),
        AuthStep::Refuse(ReasonCode::NotAuthorized)
    );
}

#[test]
fn each_exchange_starts_afresh() {
    // Re-authentication: the core begins a new exchange; the old one is not reused.
    let authenticator = rfc_authenticator();
    let mut first = authenticator.begin("client-id");
    continue_data(first.step(Some(RFC_CLIENT_FIRST.as_bytes())));
    let mut second = authenticator.begin("client-id");
    continue_data(second.step(Some(RFC_CLIENT_FIRST.as_bytes())));
    assert!(matches!(
        second.step(Some(RFC_CLIENT_FINAL.as_bytes())),
        AuthStep::Success(_)
    ));
    assert!(matches!(
        first.step(Some(RFC_CLIENT_FINAL.as_bytes())),
        AuthStep::Success(_)
    ));
}

/// A user name as a client-first-message writes it (RFC 5802 §5.1).
fn saslname(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

proptest! {
    #[test]
    fn arbitrary_client_first_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1100)) {
        let mut exchange = rfc_authenticator().begin("client-id");
        let step = exchange.step(Some(&data));
        prop_assert!(matches!(step, AuthStep::Continue(_) | AuthStep::Refuse(ReasonCode::UnspecifiedError)));
        prop_assert!(matches!(exchange.step(Some(&data)), AuthStep::Refuse(_)));
        prop_assert_eq!(exchange.identity(), None);
    }

    #[test]
    fn arbitrary_client_first_text_never_panics(text in "[nyp]?,?(a=[a-z=,]{0,4})?,?(n=[a-z=23CD,]{0,8})?,?(r=[ -~]{0,8})?(,[ -~]{0,6})?") {
        let mut exchange = rfc_authenticator().begin("client-id");
        let step = exchange.step(Some(text.as_bytes()));
        prop_assert!(matches!(step, AuthStep::Continue(_) | AuthStep::Refuse(ReasonCode::UnspecifiedError)));
    }

    #[test]
    fn arbitrary_client_final_never_panics(
        known in any::<bool>(),
        data in proptest::collection::vec(any::<u8>(), 0..1100),
    ) {
        let first = if known { RFC_CLIENT_FIRST } else { "n,,n=nobody,r=rOprNGfwEbeRWgbNEkqO" };
        let mut exchange = rfc_authenticator().begin("client-id");
        continue_data(exchange.step(Some(first.as_bytes())));
        prop_assert!(matches!(exchange.step(Some(&data)), AuthStep::Refuse(_)));
        prop_assert_eq!(exchange.identity(), None);
    }

    #[test]
    fn arbitrary_client_final_text_never_panics(
        text in "(c=[a-zA-Z0-9+/=]{0,8})?,?(r=[ -~]{0,60})?(,[a-z]=[ -~]{0,4})?,?(p=[a-zA-Z0-9+/=]{0,48})?",
    ) {
        let mut exchange = rfc_authenticator().begin("client-id");
        continue_data(exchange.step(Some(RFC_CLIENT_FIRST.as_bytes())));
        prop_assert!(matches!(exchange.step(Some(text.as_bytes())), AuthStep::Refuse(_)));
    }

    #[test]
    fn any_printable_user_and_password_authenticate(
        name in "[!-~]{1,24}",
        password in "[ -~]{0,24}",
        nonce in "[!-+--~]{1,24}",
    ) {
        let credentials = ScramCredentials::derive(password.as_bytes(), b"salt", FAST_ITERATIONS);
        let users = lookup(vec![(&name, credentials)]);
        let authenticator = ScramAuthenticator::new(users);
        let first = format!("n,,n={},r={nonce}", saslname(&name));
        let (step, identity, expected) = run(&authenticator, &first, "n,,", password.as_bytes());
        prop_assert_eq!(step, AuthStep::Success(Some(expected.into_bytes())));
        prop_assert_eq!(identity.as_deref(), Some(name.as_str()));
        let wrong = format!("{password}x");
        let (step, identity, _) = run(&authenticator, &first, "n,,", wrong.as_bytes());
        prop_assert_eq!(step, AuthStep::Refuse(ReasonCode::NotAuthorized));
        prop_assert_eq!(identity, None);
    }
}
