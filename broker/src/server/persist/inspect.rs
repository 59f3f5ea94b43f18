//! `starling store DIR`: what a store holds, for people (the broker must be stopped).

use std::fmt::Write as _;
use std::path::Path;

use starling_store::{RedbStore, STORE_FILE_NAME, Store};

use crate::config::persistence::DEFAULT_STORE_CACHE_MIB;
use crate::core::persist::codec::{EntryState, WallClock};
use crate::core::persist::record::SessionRecord;

/// Opens the store in `dir`, reads it and prints a summary (and every session if
/// `sessions`) to standard output.
pub fn print(dir: &Path, sessions: bool) -> Result<(), String> {
    let text = describe(dir, sessions)?;
    print!("{text}");
    Ok(())
}

/// The summary [`print()`] prints.
pub fn describe(dir: &Path, list_sessions: bool) -> Result<String, String> {
    let file = dir.join(STORE_FILE_NAME);
    if !file.exists() {
        return Err(format!("{}: no store here", file.display()));
    }
    let cache_bytes = (DEFAULT_STORE_CACHE_MIB << 20) as usize;
    let mut store = RedbStore::open(dir, cache_bytes).map_err(|e| e.to_string())?;
    let recovered = store.load().map_err(|e| e.to_string())?;
    let size = std::fs::metadata(&file).map_or(0, |m| m.len());
    let queued: usize = recovered.sessions.iter().map(|s| s.outbound.len()).sum();
    let inbound: usize = recovered.sessions.iter().map(|s| s.inbound.len()).sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "store: {} (format {}, {size} bytes)",
        file.display(),
        starling_store::FORMAT_VERSION
    );
    let _ = writeln!(out, "sessions: {}", recovered.sessions.len());
    let _ = writeln!(out, "messages queued or in flight: {queued}");
    let _ = writeln!(out, "QoS 2 packet ids awaiting PUBREL: {inbound}");
    let _ = writeln!(out, "message bodies: {}", recovered.messages.len());
    let _ = writeln!(out, "retained messages: {}", recovered.retained.len());
    let _ = writeln!(
        out,
        "hand-overs between loops not yet routed: {}",
        recovered.routes.len()
    );
    if list_sessions {
        // Wall-clock times are shown as stored (Unix ms); the loop clock is not involved.
        let clock = WallClock::default();
        for session in &recovered.sessions {
            let record = SessionRecord::decode(&session.record, clock)
                .map_err(|e| format!("{}: session {}: {e}", file.display(), session.client_id))?;
            let in_flight = session
                .outbound
                .iter()
                .filter(|e| {
                    crate::core::persist::codec::decode_entry(&e.meta)
                        .is_ok_and(|m| matches!(m.state, EntryState::Inflight { .. }))
                })
                .count();
            let expiry = match record.expiry_secs {
                u32::MAX => "never".to_string(),
                secs => format!("{secs} s"),
            };
            let _ = writeln!(
                out,
                "session {:?}: expiry {expiry}, expires at (Unix ms) {}, {} subscription(s), {} queued, {in_flight} in flight, will {}",
                session.client_id,
                match record.expiry_due_wall_ms {
                    0 => "-".to_string(),
                    at => at.to_string(),
                },
                record.subscriptions.len(),
                session.outbound.len() - in_flight,
                if record.will.is_some() { "yes" } else { "no" },
            );
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Message;
    use crate::core::persist::codec::{EntryMeta, encode_entry, encode_message};
    use crate::core::session::InflightState;
    use crate::core::subscription::{SubIds, SubOpts};
    use crate::protocol::QoS;
    use starling_store::{Durability, Op};

    /// A store with one session holding one queued and one in-flight message, and one
    /// retained message, written with the broker's own encoders.
    fn filled(dir: &Path) {
        let clock = WallClock::default();
        let record = SessionRecord {
            expiry_secs: 3600,
            loop_index: 0,
            listener: 0,
            username: None,
            expiry_due_wall_ms: 1_800_000_000_000,
            subscriptions: vec![("a/#".into(), SubOpts::qos_only(QoS::AtLeastOnce))],
            will: None,
        };
        let mut encoded = Vec::new();
        record.encode(clock, &mut encoded);
        let message = Message::new(
            "a/b".into(),
            b"x".to_vec().into(),
            QoS::AtLeastOnce,
            false,
            None,
        );
        let mut body = Vec::new();
        encode_message(&message, clock, &mut body);
        let entry = |state| {
            let mut meta = Vec::new();
            let fields = EntryMeta {
                qos: QoS::AtLeastOnce,
                retain: false,
                state,
                sub_ids: SubIds::None,
            };
            encode_entry(&fields, &mut meta);
            meta
        };
        let inflight = EntryState::Inflight {
            packet_id: 1,
            state: InflightState::AwaitPubAck,
        };
        let ops = [
            Op::PutSession {
                client_id: "c1".into(),
                record: encoded,
            },
            Op::PutMessage {
                id: 1,
                body: body.clone(),
            },
            Op::PutOutbound {
                client_id: "c1".into(),
                seq: 1,
                message: 1,
                meta: entry(inflight),
            },
            Op::PutOutbound {
                client_id: "c1".into(),
                seq: 2,
                message: 1,
                meta: entry(EntryState::Queued),
            },
            Op::PutRetained {
                topic: "r/1".into(),
                body,
            },
        ];
        let mut store = RedbStore::open(dir, 1 << 20).expect("open");
        store.load().expect("load");
        store.apply(&ops, Durability::Durable).expect("apply");
    }

    #[test]
    fn a_store_is_described_with_its_sessions() {
        let dir = std::env::temp_dir().join(format!("starling-inspect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        filled(&dir);
        let text = describe(&dir, true).expect("described");
        let _ = std::fs::remove_dir_all(&dir);
        for line in [
            "sessions: 1\n",
            "messages queued or in flight: 2\n",
            "message bodies: 1\n",
            "retained messages: 1\n",
            "session \"c1\": expiry 3600 s, expires at (Unix ms) 1800000000000, 1 subscription(s), 1 queued, 1 in flight, will no\n",
        ] {
            assert!(text.contains(line), "{line:?} not in:\n{text}");
        }
    }

    #[test]
    fn a_directory_without_a_store_is_refused() {
        let dir =
            std::env::temp_dir().join(format!("starling-inspect-none-{}", std::process::id()));
        let error = describe(&dir, false).expect_err("no store");
        assert!(error.contains("no store here"), "{error}");
    }
}
