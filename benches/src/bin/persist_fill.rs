//! Writes a Starling store directly, for the restart benchmark
//! (`scripts/bench-persistence.sh`, docs/benchmarks.md "Persistence"): retained messages and
//! offline persistent sessions holding queued QoS 1 messages, far faster than publishing
//! them through MQTT (and past the 20 000 descriptors one process may hold).
//!
//! The records are the broker's own: message bodies and outbound entries come from
//! `starling::core::persist::codec`, session records from
//! `starling::core::persist::record::SessionRecord`, and they are written with
//! `starling_store::RedbStore::apply`, the call the broker's persister makes. A broker
//! started on the directory rebuilds them as if it had written them itself:
//!
//! - `--retained N` retained messages on `PREFIX/r/0` .. `PREFIX/r/N-1` (QoS 1, RETAIN);
//! - `--sessions S` offline sessions `PREFIX-s-0` .. (MQTT 3.1.1 Clean Session 0 style:
//!   Session Expiry `--expiry-secs`, expiring that long after now), each subscribed at QoS 1
//!   to `PREFIX/s/I` and holding `--queued Q` queued QoS 1 messages on that topic, each with
//!   its own body (the worst case: nothing shared), dealt over `--loops` event loops.
//!
//! Payloads are `--payload-bytes` long and start with their name (`r7`, `s42m3`), padded
//! with `.`, so a reader can check what it got. Prints one JSON line: what was written, how
//! long it took, and the file's size.

use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use starling::core::Message;
use starling::core::persist::codec::{self, EntryMeta, EntryState, WallClock};
use starling::core::persist::record::SessionRecord;
use starling::core::subscription::{SubIds, SubOpts};
use starling::protocol::QoS;
use starling_store::{Durability, Op, RedbStore, STORE_FILE_NAME, Store};

/// Ops written per commit (one durable commit each).
const OPS_PER_COMMIT: usize = 200_000;

/// The generator's flags.
#[derive(Debug, Parser)]
#[command(
    name = "persist_fill",
    about = "Writes a Starling store directly (retained messages, offline sessions with queued messages) through the broker's own encoders"
)]
struct Args {
    /// The store's directory (must not hold a store yet).
    #[arg(long)]
    path: PathBuf,
    /// Retained messages.
    #[arg(long, default_value_t = 0)]
    retained: u64,
    /// Offline persistent sessions.
    #[arg(long, default_value_t = 0)]
    sessions: u64,
    /// Queued QoS 1 messages per session.
    #[arg(long, default_value_t = 0)]
    queued: u64,
    /// Payload bytes of every message.
    #[arg(long, default_value_t = 64)]
    payload_bytes: usize,
    /// Topic and client id prefix.
    #[arg(long, default_value = "gen")]
    prefix: String,
    /// The sessions' Session Expiry Interval, seconds.
    #[arg(long, default_value_t = 86_400)]
    expiry_secs: u32,
    /// Event loops the sessions are dealt over (the broker's `--event-loops`).
    #[arg(long, default_value_t = 2)]
    loops: u16,
    /// Page cache of the store while writing, MiB.
    #[arg(long, default_value_t = 64)]
    cache_mib: usize,
}

/// The stored body of a QoS 1 message on `topic` whose payload is `len` bytes starting with
/// `name`, padded with `.` (no message carries an expiry, so the clock does not matter).
fn body(topic: &str, name: &str, len: usize, retain: bool) -> Vec<u8> {
    let mut payload = name.as_bytes().to_vec();
    payload.resize(len.max(name.len()), b'.');
    let message = Message::new(
        topic.into(),
        payload.into_boxed_slice(),
        QoS::AtLeastOnce,
        retain,
        None,
    );
    let mut body = Vec::new();
    codec::encode_message(&message, WallClock::default(), &mut body);
    body
}

/// Ops gathered into durable commits.
struct Writer {
    store: RedbStore,
    ops: Vec<Op>,
    commits: u64,
}

impl Writer {
    fn push(&mut self, op: Op) -> Result<(), starling_store::StoreError> {
        self.ops.push(op);
        if self.ops.len() >= OPS_PER_COMMIT {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), starling_store::StoreError> {
        if !self.ops.is_empty() {
            self.store.apply(&self.ops, Durability::Durable)?;
            self.ops.clear();
            self.commits += 1;
        }
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    if args.path.join(STORE_FILE_NAME).exists() {
        return Err(format!(
            "{} exists: give a directory without a store",
            args.path.join(STORE_FILE_NAME).display()
        )
        .into());
    }
    let began = Instant::now();
    let mut store = RedbStore::open(&args.path, args.cache_mib << 20)?;
    store.load()?;
    let mut w = Writer {
        store,
        ops: Vec::new(),
        commits: 0,
    };
    // Session records date their expiry by the wall clock; offset 0: loop time is wall time.
    let clock = WallClock::default();
    let now_wall_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let prefix = &args.prefix;
    for r in 0..args.retained {
        let topic = format!("{prefix}/r/{r}");
        let body = body(&topic, &format!("r{r}"), args.payload_bytes, true);
        w.push(Op::PutRetained {
            topic: topic.into(),
            body,
        })?;
    }
    let (mut message_id, mut seq) = (0u64, 0u64);
    let mut entry = Vec::new();
    let meta = EntryMeta {
        qos: QoS::AtLeastOnce,
        retain: false,
        state: EntryState::Queued,
        sub_ids: SubIds::None,
    };
    codec::encode_entry(&meta, &mut entry);
    for s in 0..args.sessions {
        let client_id: Box<str> = format!("{prefix}-s-{s}").into();
        let topic = format!("{prefix}/s/{s}");
        let record = SessionRecord {
            expiry_secs: args.expiry_secs,
            loop_index: (s % u64::from(args.loops.max(1))) as u16,
            listener: 0,
            username: None,
            expiry_due_wall_ms: now_wall_ms + u64::from(args.expiry_secs) * 1000,
            subscriptions: vec![(topic.clone().into(), SubOpts::qos_only(QoS::AtLeastOnce))],
            will: None,
        };
        let mut encoded = Vec::new();
        record.encode(clock, &mut encoded);
        w.push(Op::PutSession {
            client_id: client_id.clone(),
            record: encoded,
        })?;
        for m in 0..args.queued {
            message_id += 1;
            seq += 1;
            let body = body(&topic, &format!("s{s}m{m}"), args.payload_bytes, false);
            // The body and its first reference go in one batch, as the broker writes them.
            w.ops.push(Op::PutMessage {
                id: message_id,
                body,
            });
            w.push(Op::PutOutbound {
                client_id: client_id.clone(),
                seq,
                message: message_id,
                meta: entry.clone(),
            })?;
        }
    }
    w.commit()?;
    let file = w.store.path().to_path_buf();
    let stats = w.store.stats();
    w.store.close()?;
    let file_bytes = std::fs::metadata(&file)?.len();
    println!(
        "{{\"retained\": {}, \"sessions\": {}, \"queued\": {}, \"payload_bytes\": {}, \
         \"commits\": {}, \"ops\": {}, \"secs\": {:.3}, \"file_bytes\": {file_bytes}}}",
        args.retained,
        args.sessions,
        args.sessions * args.queued,
        args.payload_bytes,
        w.commits,
        stats.ops,
        began.elapsed().as_secs_f64()
    );
    Ok(())
}
