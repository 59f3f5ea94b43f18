use std::path::PathBuf;

use super::*;

fn edit(existing: &str, username: &str, change: Change<'_>) -> (String, Outcome) {
    let (bytes, outcome) = edit_text(existing.as_bytes(), username, change).expect("edited");
    (String::from_utf8(bytes).expect("UTF-8"), outcome)
}

#[test]
fn a_new_user_is_appended_after_everything_else() {
    let (text, outcome) = edit("# users\r\nalice:$7$a\n\n", "bob", Change::Set("$6$b"));
    assert_eq!(outcome, Outcome::Added);
    assert_eq!(text, "# users\r\nalice:$7$a\n\nbob:$6$b\n");
    let (text, _) = edit("alice:$7$a", "bob", Change::Set("$6$b"));
    assert_eq!(
        text, "alice:$7$a\nbob:$6$b\n",
        "a missing final newline is added"
    );
    let (text, _) = edit("", "bob", Change::Set("$6$b"));
    assert_eq!(text, "bob:$6$b\n");
}

#[test]
fn an_update_replaces_the_first_line_in_place_and_drops_duplicates() {
    let existing = "alice:old\r\n# alice:comment\nbob:$6$b\nalice:older\n";
    let (text, outcome) = edit(existing, "alice", Change::Set("$7$new"));
    assert_eq!(outcome, Outcome::Updated);
    assert_eq!(text, "alice:$7$new\n# alice:comment\nbob:$6$b\n");
}

#[test]
fn a_delete_removes_every_line_of_the_user_only() {
    let existing = "#c\nalice:x\nalicia:y\nalice:z\r\nmalformed line\n";
    let (text, outcome) = edit(existing, "alice", Change::Delete);
    assert_eq!(outcome, Outcome::Deleted);
    assert_eq!(text, "#c\nalicia:y\nmalformed line\n");
    let error = edit_text(existing.as_bytes(), "carol", Change::Delete).expect_err("absent");
    assert_eq!(error, "no user \"carol\"");
}

#[test]
fn passwords_are_checked() {
    assert_eq!(check_password(b""), Err("empty password".to_string()));
    assert!(check_password(&vec![b'x'; MAX_PASSWORD_BYTES]).is_ok());
    assert!(check_password(&vec![b'x'; MAX_PASSWORD_BYTES + 1]).is_err());
}

/// A fresh directory under the temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path =
            std::env::temp_dir().join(format!("starling-edit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("temporary directory");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
}

#[test]
fn a_new_file_is_private_and_an_existing_one_keeps_its_mode() {
    let dir = TempDir::new("mode");
    let path = dir.0.join("passwords");
    write_atomically(&path, b"a:1\n").expect("written");
    assert_eq!(mode(&path), NEW_FILE_MODE);
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
    write_atomically(&path, b"a:2\n").expect("rewritten");
    assert_eq!(mode(&path), 0o640);
    assert_eq!(fs::read(&path).expect("read"), b"a:2\n");
    let leftovers = fs::read_dir(&dir.0).expect("list").count();
    assert_eq!(leftovers, 1, "no temporary file is left behind");
}

#[test]
fn a_symbolic_link_is_followed() {
    let dir = TempDir::new("link");
    let target = dir.0.join("real");
    let link = dir.0.join("link");
    fs::write(&target, b"a:1\n").expect("target");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    write_atomically(&link, b"a:2\n").expect("written");
    assert!(
        fs::symlink_metadata(&link)
            .expect("link")
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(&target).expect("read"), b"a:2\n");
}

#[test]
fn run_creates_updates_and_deletes() {
    let dir = TempDir::new("run");
    let file = dir.0.join("passwords");
    let request = |username: &str, create: bool, action: Action| Passwd {
        file: file.clone(),
        username: username.to_string(),
        create,
        action,
    };
    let set = |password: &[u8]| Action::Set {
        password: PasswordSource::Given(password.to_vec()),
        format: HashFormat::Pbkdf2Sha512,
    };
    let error = run(&request("alice", false, set(b"pw"))).expect_err("no file yet");
    assert!(error.0.contains("no such file (-c creates"), "{error}");

    let report = run(&request("alice", true, set(b"pw"))).expect("created");
    assert_eq!(report.outcome, Outcome::Added);
    assert_eq!(report.warning, None);
    let report = run(&request("bob", false, set(b"pw2"))).expect("added");
    assert_eq!(report.outcome, Outcome::Added);
    let report = run(&request("alice", false, set(b"new"))).expect("updated");
    assert_eq!(report.outcome, Outcome::Updated);
    let passwords = PasswordFile::load(&file).expect("valid");
    assert!(passwords.verify("alice", b"new"));
    assert!(passwords.verify("bob", b"pw2"));

    let report = run(&request("bob", false, Action::Delete)).expect("deleted");
    assert_eq!(report.outcome, Outcome::Deleted);
    assert_eq!(PasswordFile::load(&file).expect("valid").len(), 1);

    assert!(run(&request("a:b", false, set(b"pw"))).is_err());
    assert!(run(&request("carol", false, set(b""))).is_err());

    fs::write(&file, b"broken\n").expect("write");
    let report = run(&request("carol", false, set(b"pw"))).expect("added");
    let warning = report.warning.expect("the other line is at fault");
    assert!(warning.contains(":1: no ':'"), "{warning}");
}
