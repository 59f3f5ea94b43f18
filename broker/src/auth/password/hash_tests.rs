use super::*;

/// Written by `mosquitto_passwd -b FILE alice secret` (2.0.11).
const MOSQUITTO_7: &str = "$7$101$mKXeGtH5TBla50C7$WJjyyy+bjvqh98ar8mwzGwqa6/QReCm5+8z8dEmtJqb4rLVs5T/SycGq6h5m4Gyy/Yel0C3Se8IRufg9KQ4bOQ==";
/// Written by `mosquitto_passwd -H sha512 -b FILE bob hunter2`.
const MOSQUITTO_6: &str = "$6$s1wCAXMcDX7PJmpi$KalSI6xQPoWpEzYtLgmyz8HqBjQyfqQ40m9g9fW56tcx0N58mnmpMksNinxC58bCBkl4TnZ0Ycuh2JgmUYzqQw==";
/// RFC 7677's example: password "pencil", this salt, 4096 iterations.
const RFC7677_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const RFC7677_STORED_KEY: &str = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=";
const RFC7677_SERVER_KEY: &str = "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

/// Reads the verifier format independently of `ScramCredentials::parse`.
fn decode_verifier(text: &str) -> ScramCredentials {
    let fields: Vec<&str> = text.split('$').collect();
    assert_eq!(fields[..2], ["", "scram-sha-256"], "{text}");
    let key = |field: &str| -> [u8; 32] {
        let bytes = BASE64.decode(field).expect("base64 key");
        <[u8; 32]>::try_from(bytes).expect("32 bytes")
    };
    ScramCredentials {
        iterations: fields[2].parse().expect("iterations"),
        salt: BASE64.decode(fields[3]).expect("base64 salt"),
        stored_key: key(fields[4]),
        server_key: key(fields[5]),
    }
}

#[test]
fn mosquitto_pbkdf2_sha512_verifies() {
    let hash = PasswordHash::parse(MOSQUITTO_7).expect("a $7$ hash");
    assert!(matches!(
        hash,
        PasswordHash::Pbkdf2Sha512 {
            iterations: 101,
            ref salt,
            ..
        } if salt.len() == 12
    ));
    assert!(hash.verify(b"secret"));
    assert!(!hash.verify(b"Secret"));
    assert!(!hash.verify(b""));
}

#[test]
fn mosquitto_salted_sha512_verifies() {
    let hash = PasswordHash::parse(MOSQUITTO_6).expect("a $6$ hash");
    assert!(matches!(hash, PasswordHash::Sha512Salted { .. }));
    assert!(hash.verify(b"hunter2"));
    assert!(!hash.verify(b"hunter3"));
}

#[test]
fn scram_verifier_matches_rfc_7677() {
    let salt = BASE64.decode(RFC7677_SALT).expect("salt");
    let verifier = scram_verifier(b"pencil", &salt, 4096);
    assert_eq!(
        verifier,
        format!("$scram-sha-256$4096${RFC7677_SALT}${RFC7677_STORED_KEY}${RFC7677_SERVER_KEY}")
    );
    let hash = PasswordHash::Scram(decode_verifier(&verifier));
    assert!(hash.verify(b"pencil"));
    assert!(!hash.verify(b"pencil "));
}

#[test]
fn scram_lines_go_through_the_scram_parser() {
    let verifier = hash_password(b"pw", HashFormat::Scram).expect("hash");
    assert_eq!(
        decode_verifier(&verifier).iterations,
        SCRAM_WRITE_ITERATIONS
    );
    assert_eq!(decode_verifier(&verifier).salt.len(), SALT_BYTES);
    match (
        ScramCredentials::parse(&verifier),
        PasswordHash::parse(&verifier),
    ) {
        (Some(expected), Ok(PasswordHash::Scram(parsed))) => {
            assert_eq!(parsed, expected);
            assert_eq!(parsed, decode_verifier(&verifier));
            assert!(PasswordHash::Scram(parsed).verify(b"pw"));
        }
        (None, Err(message)) => assert!(message.contains("SCRAM-SHA-256"), "{message}"),
        (scram, parsed) => panic!("scram.rs gave {scram:?}, the hash parser {parsed:?}"),
    }
}

#[test]
fn argon2id_round_trips_with_the_default_costs() {
    let text = hash_password(b"correct horse", HashFormat::Argon2id).expect("hash");
    assert!(
        text.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{text}"
    );
    let hash = PasswordHash::parse(&text).expect("parses");
    assert!(hash.verify(b"correct horse"));
    assert!(!hash.verify(b"correct horse battery"));
}

#[test]
fn pbkdf2_sha512_is_written_as_mosquitto_passwd_writes_it() {
    let text = hash_password(b"pw", HashFormat::Pbkdf2Sha512).expect("hash");
    let fields: Vec<&str> = text.split('$').collect();
    assert_eq!(fields[..3], ["", "7", "101"], "{text}");
    assert_eq!(BASE64.decode(fields[3]).expect("salt").len(), 12);
    assert_eq!(BASE64.decode(fields[4]).expect("hash").len(), 64);
    let hash = PasswordHash::parse(&text).expect("parses");
    assert!(hash.verify(b"pw"));
    assert!(!hash.verify(b"pW"));
    assert_ne!(
        text,
        hash_password(b"pw", HashFormat::Pbkdf2Sha512).expect("hash"),
        "a fresh salt each time"
    );
}

#[test]
fn debug_shows_no_hash_material() {
    let hash = PasswordHash::parse(MOSQUITTO_7).expect("a $7$ hash");
    let debug = format!("{hash:?}");
    assert_eq!(debug, "Pbkdf2Sha512 { iterations: 101, .. }");
}

fn refusal(text: &str) -> String {
    PasswordHash::parse(text).expect_err(text)
}

#[test]
fn unknown_and_unhashed_formats_are_refused() {
    assert_eq!(
        refusal("$5$rounds=5000$salt$hash"),
        "unknown hash format \"$5$\" (accepted: $7$, $6$, $argon2id$, $scram-sha-256$)"
    );
    assert!(
        refusal("$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g").contains("\"$argon2i$\"")
    );
    let plain = refusal("hunter2");
    assert!(plain.contains("plain-text"), "{plain}");
    assert!(
        !plain.contains("hunter2"),
        "a plain password is not echoed: {plain}"
    );
    assert_eq!(refusal(""), "empty hash");
}

#[test]
fn malformed_pbkdf2_and_sha512_hashes_are_refused() {
    let salt = BASE64.encode([1u8; 12]);
    let hash = BASE64.encode([2u8; 64]);
    let cases = [
        (format!("$7$101${salt}"), "2 fields where 3 were expected"),
        (format!("$7$101${salt}${hash}$x"), "4 fields where 3"),
        (
            format!("$7$0${salt}${hash}"),
            "iteration count 0 is outside 1..=10000000",
        ),
        (
            format!("$7$10000001${salt}${hash}"),
            "iteration count 10000001 is outside",
        ),
        (format!("$7$+5${salt}${hash}"), "\"+5\" is not a number"),
        (format!("$7$99999999999${salt}${hash}"), "is not a number"),
        (format!("$7$101$!!!${hash}"), "the salt is not base64"),
        (format!("$7$101$${hash}"), "the salt is 0 bytes long"),
        (
            format!("$7$101${}${hash}", BASE64.encode([0u8; 300])),
            "the salt is 300 bytes",
        ),
        (
            format!("$7$101${salt}${}", BASE64.encode([2u8; 32])),
            "the hash is 32 bytes long (64 expected)",
        ),
        (
            format!("$7$101${salt}${}", &hash[..hash.len() - 2]),
            "the hash is not base64",
        ),
        (format!("$6${salt}"), "1 fields where 2 were expected"),
        (format!("$6${salt}${hash} "), "the hash is not base64"),
    ];
    for (text, expected) in cases {
        let message = refusal(&text);
        assert!(message.contains(expected), "{text}: {message}");
    }
}

#[test]
fn argon2id_costs_past_the_limits_are_refused() {
    let salt = "c2FsdHNhbHRzYWx0";
    let out = "aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
    let cases = [
        (
            format!("$argon2id$v=19$m=262145,t=2,p=1${salt}${out}"),
            "m=262145 is above 262144",
        ),
        (
            format!("$argon2id$v=19$m=19456,t=101,p=1${salt}${out}"),
            "t=101 is above 100",
        ),
        (
            format!("$argon2id$v=19$m=19456,t=2,p=65${salt}${out}"),
            "p=65 is above 64",
        ),
        (
            format!("$argon2id$v=19$m=19456,t=2,p=1${salt}"),
            "no salt or no hash",
        ),
        (
            format!("$argon2id$v=19$m=19456,t=2,q=1${salt}${out}"),
            "invalid $argon2id$ parameters",
        ),
        (
            format!("$argon2id$v=19$m=1,t=2,p=1${salt}${out}"),
            "invalid $argon2id$ parameters",
        ),
        (
            format!("$argon2id$v=19$m=19456,t=2,p=1$!${out}"),
            "malformed $argon2id$ hash",
        ),
        (
            format!("$argon2id$v=18$m=19456,t=2,p=1${salt}${out}"),
            "v=18 unknown",
        ),
    ];
    for (text, expected) in cases {
        let message = refusal(&text);
        assert!(message.contains(expected), "{text}: {message}");
    }
    let limits = format!("$argon2id$v=19$m=262144,t=100,p=64${salt}${out}");
    assert!(PasswordHash::parse(&limits).is_ok(), "at the limits");
}

#[test]
fn a_wrong_password_never_verifies_whatever_the_format() {
    let hashes = [
        PasswordHash::parse(MOSQUITTO_7).expect("$7$"),
        PasswordHash::parse(MOSQUITTO_6).expect("$6$"),
        PasswordHash::Scram(decode_verifier(&scram_verifier(b"secret", b"salt", 4096))),
    ];
    for hash in hashes {
        assert!(!hash.verify(b"not it"), "{hash:?}");
    }
}
