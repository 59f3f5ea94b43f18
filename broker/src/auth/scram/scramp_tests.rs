//! Against an independent client: Python's `scramp` (installed into the test virtualenv
//! `.venv/` by `scripts/setup.sh`), which also makes the stored verifier. Skipped, with a
//! note, where that virtualenv is missing, except under CI (`CI` set), where it must be
//! there.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use super::*;
use crate::core::AuthStep;

/// The client: makes a verifier for argv[2] with scramp's server side, prints it, then runs
/// scramp's client as user argv[1] with password argv[3], a message per line; prints
/// `verified` if the server-final-message checks out, `unverified` otherwise.
const CLIENT: &str = r#"
import base64, sys, scramp
user, stored_password, password = sys.argv[1:4]
b64 = lambda b: base64.b64encode(b).decode()
salt, stored, server, i = scramp.ScramMechanism("SCRAM-SHA-256").make_auth_info(
    stored_password, iteration_count=4096)
print(f"$scram-sha-256${i}${b64(salt)}${b64(stored)}${b64(server)}", flush=True)
client = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
print(client.get_client_first(), flush=True)
client.set_server_first(sys.stdin.readline().rstrip("\n"))
print(client.get_client_final(), flush=True)
try:
    client.set_server_final(sys.stdin.readline().rstrip("\n"))
    print("verified", flush=True)
except scramp.ScramException:
    print("unverified", flush=True)
"#;

/// The virtualenv's Python, if there is one.
fn python() -> Option<PathBuf> {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{} is missing: scripts/setup.sh makes it",
        python.display()
    );
    eprintln!(
        "skipped: no {} (scripts/setup.sh makes it)",
        python.display()
    );
    None
}

/// One exchange between scramp's client and a [`ScramAuthenticator`] holding scramp's
/// verifier for `stored_password`: the server's last step, and the client's verdict.
fn exchange(
    python: &PathBuf,
    user: &str,
    stored_password: &str,
    password: &str,
) -> (AuthStep, String) {
    let mut child = Command::new(python)
        .args(["-c", CLIENT, user, stored_password, password])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut line = || lines.next().expect("a line").expect("UTF-8");
    let credentials = ScramCredentials::parse(&line()).expect("scramp's verifier parses");
    let owner = user.to_owned();
    let users: CredentialLookup =
        Arc::new(move |name| (name == owner).then(|| credentials.clone()));
    let mut exchange = ScramAuthenticator::new(users).begin("client-id");
    let AuthStep::Continue(server_first) = exchange.step(Some(line().as_bytes())) else {
        panic!("client-first refused");
    };
    stdin.write_all(&server_first).expect("write");
    stdin.write_all(b"\n").expect("write");
    let last = exchange.step(Some(line().as_bytes()));
    if let AuthStep::Success(Some(server_final)) = &last {
        stdin.write_all(server_final).expect("write");
        assert_eq!(exchange.identity(), Some(user));
    } else {
        assert_eq!(exchange.identity(), None);
    }
    stdin.write_all(b"\n").expect("write");
    let verdict = line();
    drop(stdin);
    assert!(child.wait().expect("python exits").success());
    (last, verdict)
}

#[test]
fn scramp_client_authenticates_and_verifies_the_server() {
    let Some(python) = python() else { return };
    for (user, password) in [
        ("user", "pencil"),
        ("a,b=c", "pass word with spaces"),
        ("~!@#$%^&*()", "=,=,"),
    ] {
        let (step, verdict) = exchange(&python, user, password, password);
        assert!(
            matches!(step, AuthStep::Success(Some(_))),
            "{user}: {step:?}"
        );
        assert_eq!(verdict, "verified", "{user}");
    }
}

#[test]
fn scramp_client_with_a_wrong_password_is_not_authorized() {
    let Some(python) = python() else { return };
    let (step, verdict) = exchange(&python, "user", "pencil", "pen");
    assert_eq!(
        step,
        AuthStep::Refuse(crate::protocol::ReasonCode::NotAuthorized)
    );
    assert_eq!(verdict, "unverified");
}
