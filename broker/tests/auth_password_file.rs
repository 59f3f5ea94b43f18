//! Password files against the real tools: files Debian's `mosquitto_passwd` writes (`$7$`
//! and `$6$`) parse and verify, and `starling passwd` (the real binary) creates, updates and
//! deletes entries in files `mosquitto_passwd` also edits. `mosquitto_passwd` comes with
//! the `mosquitto` package; without it these tests fail (they do not skip).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use starling::auth::password::{PasswordFile, PasswordHash};

mod tempdir_common;
use tempdir_common::TempDir;

/// Runs `mosquitto_passwd ARGS`, which must succeed.
fn mosquitto_passwd(args: &[&str]) {
    let output = match Command::new("mosquitto_passwd").args(args).output() {
        Ok(output) => output,
        Err(error) => panic!(
            "cannot run mosquitto_passwd ({error}): install the `mosquitto` package \
             (apt-get install mosquitto), which these tests compare against"
        ),
    };
    assert!(
        output.status.success(),
        "mosquitto_passwd {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `starling passwd ARGS` with `stdin` piped in.
fn starling_passwd(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_starling"))
        .arg("passwd")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the binary");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin)
        .expect("write stdin");
    child.wait_with_output().expect("wait for the binary")
}

/// `starling passwd ARGS`, which must succeed silently.
fn starling_passwd_ok(args: &[&str], stdin: &[u8]) {
    let output = starling_passwd(args, stdin);
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "starling passwd {args:?}: {output:?}"
    );
}

/// A fresh directory (removed when dropped) and the path of a password file in it, also as
/// text for the command lines.
fn password_file(name: &str) -> (TempDir, PathBuf, String) {
    let dir = TempDir::new(&format!("passwd-{name}"));
    let file = dir.join("passwords");
    let path = file.to_str().expect("UTF-8 path").to_string();
    (dir, file, path)
}

fn load(path: &Path) -> PasswordFile {
    PasswordFile::load(path).unwrap_or_else(|error| panic!("{error}"))
}

fn text(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read the file")
}

#[test]
fn files_mosquitto_passwd_writes_verify() {
    let (_dir, file, path) = password_file("mosquitto");
    let path = path.as_str();
    mosquitto_passwd(&["-c", "-b", path, "alice", "secret"]);
    mosquitto_passwd(&["-H", "sha512-pbkdf2", "-b", path, "bob", "pa:ss word"]);
    // Mosquitto 1.6's format, which 2.0 still writes on request.
    mosquitto_passwd(&["-H", "sha512", "-b", path, "carol", "hunter2"]);

    let passwords = load(&file);
    assert_eq!(passwords.len(), 3);
    for user in ["alice", "bob"] {
        assert!(
            matches!(
                passwords.get(user),
                Some(PasswordHash::Pbkdf2Sha512 {
                    iterations: 101,
                    ..
                })
            ),
            "{user}: {:?}",
            passwords.get(user)
        );
    }
    assert!(matches!(
        passwords.get("carol"),
        Some(PasswordHash::Sha512Salted { .. })
    ));
    assert!(passwords.verify("alice", b"secret"));
    assert!(!passwords.verify("alice", b"secret "));
    assert!(passwords.verify("bob", b"pa:ss word"));
    assert!(!passwords.verify("bob", b"secret"));
    assert!(passwords.verify("carol", b"hunter2"));
    assert!(!passwords.verify("carol", b"Hunter2"));

    // An update rewrites the hash with a fresh salt; the old password stops working.
    mosquitto_passwd(&["-b", path, "alice", "changed"]);
    let passwords = load(&file);
    assert!(passwords.verify("alice", b"changed"));
    assert!(!passwords.verify("alice", b"secret"));
}

#[test]
fn starling_passwd_creates_updates_and_deletes() {
    let (_dir, file, path) = password_file("starling");
    let path = path.as_str();

    starling_passwd_ok(&["-c", "-b", path, "alice", "secret"], b"");
    let mode = std::fs::metadata(&file).expect("file").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "a new file is private");
    assert!(text(&file).starts_with("alice:$argon2id$v=19$m=19456,t=2,p=1$"));
    // Piped: one line of standard input is the password.
    starling_passwd_ok(&["--hash", "pbkdf2-sha512", path, "bob"], b"hunter2\n");
    assert!(text(&file).contains("\nbob:$7$101$"));

    let passwords = load(&file);
    assert!(passwords.verify("alice", b"secret"));
    assert!(passwords.verify("bob", b"hunter2"));
    assert!(!passwords.verify("bob", b"hunter2\n"));

    // Comments and other users' lines are kept as they are.
    let mut edited = text(&file);
    edited.insert_str(0, "# managed by hand\r\n\n");
    std::fs::write(&file, &edited).expect("write");
    starling_passwd_ok(&["-H", "pbkdf2-sha512", "-b", path, "alice", "new"], b"");
    let after = text(&file);
    assert!(
        after.starts_with("# managed by hand\r\n\nalice:$7$101$"),
        "{after}"
    );
    let bob_line = edited.lines().find(|l| l.starts_with("bob:")).expect("bob");
    assert!(after.contains(bob_line));
    let passwords = load(&file);
    assert!(passwords.verify("alice", b"new"));
    assert!(!passwords.verify("alice", b"secret"));

    starling_passwd_ok(&["-D", path, "bob"], b"");
    let passwords = load(&file);
    assert_eq!(passwords.len(), 1);
    assert!(passwords.get("bob").is_none());
    assert!(text(&file).starts_with("# managed by hand\r\n\n"));
}

#[test]
fn starling_and_mosquitto_passwd_edit_the_same_file() {
    let (_dir, file, path) = password_file("both");
    let path = path.as_str();
    mosquitto_passwd(&["-c", "-b", path, "alice", "secret"]);
    starling_passwd_ok(&["-H", "pbkdf2-sha512", "-b", path, "bob", "hunter2"], b"");
    // mosquitto_passwd reads our `$7$` line back (it rewrites the file with it).
    mosquitto_passwd(&["-b", path, "carol", "pw"]);
    mosquitto_passwd(&["-D", path, "alice"]);
    let passwords = load(&file);
    assert_eq!(passwords.len(), 2, "{}", text(&file));
    assert!(passwords.verify("bob", b"hunter2"));
    assert!(passwords.verify("carol", b"pw"));
    starling_passwd_ok(&["-D", path, "carol"], b"");
    assert_eq!(load(&file).len(), 1);
}

#[test]
fn starling_passwd_refuses_bad_requests() {
    let (_dir, file, path) = password_file("refusals");
    let path = path.as_str();

    let refused = |args: &[&str], stdin: &[u8], expected: &str| {
        let output = starling_passwd(args, stdin);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    };
    refused(
        &["-b", path, "alice", "pw"],
        b"",
        "no such file (-c creates",
    );
    refused(&["-c", "-b", path, "a:b", "pw"], b"", "may not contain ':'");
    refused(
        &["-c", "-b", path, "#alice", "pw"],
        b"",
        "may not start with '#'",
    );
    refused(
        &["-c", path, "alice"],
        b"",
        "end of input before a password",
    );
    refused(&["-c", path, "alice"], b"\n", "empty password");
    refused(&["-b", path, "alice"], b"", "<PASSWORD>");
    refused(&[path, "alice", "pw"], b"", "-b");
    refused(&["-c", "-D", path, "alice"], b"", "cannot be used with");
    assert!(!file.exists(), "nothing was written");

    starling_passwd_ok(&["-c", "-b", path, "alice", "pw"], b"");
    refused(&["-D", path, "bob"], b"", "no user \"bob\"");
    refused(&["--hash", "md5", "-b", path, "bob", "pw"], b"", "md5");
}
