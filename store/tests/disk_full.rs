//! A full disk, for real: a child process runs in its own mount namespace on a small tmpfs,
//! fills it, and sees a durable batch fail with `StoreError::NoSpace` (nothing of it
//! applied, the batches buffered before it lost, as `SimStore::fail_next` simulates), then
//! frees the space and carries on with the same `RedbStore`. Skipped (passing, with a note)
//! where a tmpfs cannot be mounted (`unshare -m` needs root).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use starling_store::{Durability, STORE_FILE_NAME, SimStore, Store, StoreError};

use Durability::{Buffered, Durable};

/// The size of the tmpfs the child runs on.
const TMPFS_BYTES: usize = 2 << 20;
/// A body larger than whatever free pages the store's file may hold.
const LARGE_BODY_BYTES: usize = 512 << 10;
/// What the child writes at a time to fill the disk.
const FILLER_CHUNK_BYTES: usize = 64 << 10;

/// The shell script run by `unshare -m`: mounts a tmpfs on `$1`, then runs the rest.
fn mount_script() -> String {
    format!("mount -t tmpfs -o size={TMPFS_BYTES} tmpfs \"$1\" && shift && exec \"$@\"")
}

/// `unshare -m sh -c SCRIPT sh DIR ARGS...`: `ARGS` run on a tmpfs mounted on `dir`.
fn on_tmpfs(dir: &Path, args: &[&std::ffi::OsStr]) -> Command {
    let mut command = Command::new("unshare");
    command
        .args(["-m", "sh", "-c", &mount_script(), "sh"])
        .arg(dir)
        .args(args);
    command
}

/// Fills the file system of `file` until it is full.
fn fill(file: &Path) {
    let mut filler = std::fs::File::create(file).expect("create the filler");
    let chunk = vec![0u8; FILLER_CHUNK_BYTES];
    loop {
        if let Err(error) = filler.write_all(&chunk).and_then(|()| filler.sync_all()) {
            assert_eq!(error.kind(), std::io::ErrorKind::StorageFull, "{error}");
            return;
        }
    }
}

/// In a child process, on a small tmpfs: the batches, the full disk, and the recovery.
#[test]
fn disk_full_child() {
    let Some(dir) = child_role("disk-full") else {
        return;
    };
    let batches = [
        (
            vec![put_session("a", b"a"), queued("a", 1, 1)[0].clone()],
            Durable,
        ),
        (
            vec![queued("a", 1, 1)[1].clone(), put_session("b", b"b")],
            Buffered,
        ),
    ];
    let large = vec![
        put_message(2, &vec![1; LARGE_BODY_BYTES]),
        put_outbound("a", 2, 2, b""),
    ];
    let after = vec![put_session("c", b"after the full disk")];

    let store_dir = dir.join("store");
    let (mut store, _) = open_loaded(&store_dir);
    let mut sim = SimStore::new();
    for (ops, durability) in &batches {
        store.apply(ops, *durability).expect("apply");
        sim.apply(ops, *durability).expect("apply");
    }
    fill(&dir.join("filler"));
    let error = store.apply(&large, Durable).expect_err("the disk is full");
    let file = store_dir.join(STORE_FILE_NAME);
    assert!(
        matches!(&error, StoreError::NoSpace(path) if *path == file),
        "{error}"
    );
    assert!(error.to_string().contains("no space left"), "{error}");
    assert_eq!(store.stats().failures, 1);
    sim.fail_next(1, || StoreError::NoSpace("sim".into()));
    sim.apply(&large, Durable)
        .expect_err("the simulated failure");

    std::fs::remove_file(dir.join("filler")).expect("free the space");
    store.apply(&after, Durable).expect("the store carries on");
    sim.apply(&after, Durable).expect("apply");
    let expected = sim.load().expect("load");
    assert_eq!(store.load().expect("load"), expected);
    assert_eq!(store.stats().messages, sim.stats().messages);
    let (_, recovered) = reopen(store);
    assert_eq!(recovered, expected);
    assert_bodies_referenced(&recovered);
}

#[test]
fn a_full_disk_fails_the_batch_and_the_store_carries_on_once_space_is_freed() {
    let probe = TempDir::new("disk-full-probe");
    let probed = on_tmpfs(probe.path(), &["true".as_ref()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output();
    match probed {
        Ok(output) if output.status.success() => {}
        Ok(output) => {
            let reason = String::from_utf8_lossy(&output.stderr);
            eprintln!("skipped: cannot mount a tmpfs in a new mount namespace: {reason}");
            return;
        }
        Err(error) => {
            eprintln!("skipped: cannot run unshare: {error}");
            return;
        }
    }
    let dir = TempDir::new("disk-full");
    let child = child_command("disk_full_child", "disk-full", dir.path());
    let mut args = vec![child.get_program()];
    args.extend(child.get_args());
    let mut command = on_tmpfs(dir.path(), &args);
    for (name, value) in child.get_envs() {
        if let Some(value) = value {
            command.env(name, value);
        }
    }
    let status = run_captured(&mut command);
    assert!(status.success(), "the child: {status}");
    // The tmpfs went with the child's namespace: nothing of it is here.
    assert!(!dir.join("store").exists());
}
