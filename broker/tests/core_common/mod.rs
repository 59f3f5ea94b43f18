//! An in-memory network of shards for the `core_*` tests: simulated clients send bytes
//! straight into [`Shard::receive`], and everything the shards ask of a driver (output,
//! closes, handovers, forwards between loops) is carried out here, deterministically.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use starling::core::shared::ASSIGNED_ID_KEY_BYTES;
use starling::core::{Action, ConnId, CoreConfig, Shard, Shared};
use starling::protocol::{FrameError, PacketType, ProtocolVersion, check_frame, check_frame_for};

use crate::protocol_common::{self as packets, ConnectSpec};

/// A packet the broker sent to a client, decoded by a minimal client-side parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    ConnAck {
        session_present: bool,
        code: u8,
    },
    Publish {
        topic: String,
        payload: Vec<u8>,
        qos: u8,
        retain: bool,
        dup: bool,
        packet_id: Option<u16>,
    },
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    SubAck {
        packet_id: u16,
        codes: Vec<u8>,
    },
    UnsubAck(u16),
    PingResp,
    /// An MQTT 5 PUBLISH (to a v5 client), with the properties the tests look at.
    Publish5 {
        topic: String,
        payload: Vec<u8>,
        qos: u8,
        retain: bool,
        dup: bool,
        packet_id: Option<u16>,
        sub_ids: Vec<u32>,
        expiry_secs: Option<u32>,
        user_properties: Vec<(String, String)>,
        topic_alias: Option<u16>,
    },
    /// An MQTT 5 UNSUBACK with its reason codes.
    UnsubAck5 {
        packet_id: u16,
        codes: Vec<u8>,
    },
    /// An MQTT 5 DISCONNECT from the server, with its reason code.
    Disconnect(u8),
    /// An MQTT 5 AUTH from the server: reason code and Authentication Data.
    Auth {
        reason: u8,
        data: Option<Vec<u8>>,
    },
}

/// A simulated client.
pub struct Client {
    pub loop_index: usize,
    pub conn: Option<ConnId>,
    pub bytes: Vec<u8>,
    pub received: Vec<Received>,
    pub closed: bool,
    /// Whether the client spoke MQTT 5 in its CONNECT.
    pub v5: bool,
    /// Whether the client sent its first CONNECT (a second one does not change `v5`).
    pub sent_connect: bool,
    /// MQTT 5 only: (type, packet id, reason code) of each PUBACK, PUBREC, PUBREL and
    /// PUBCOMP received, in order (`received` keeps the packet ids only).
    pub ack_reasons: Vec<(PacketType, u16, u8)>,
}

/// Shards and clients.
pub struct Net {
    pub shards: Vec<Shard>,
    pub shared: Arc<Shared>,
    pub clients: Vec<Client>,
    pub now_ms: u64,
    by_conn: HashMap<(usize, ConnId), usize>,
    dirty: Vec<ConnId>,
    /// The password file the driver verifies against (user → password), and the
    /// verifications still to answer (answered by [`Net::answer_verifications`], or at
    /// once when `verify_at_once`).
    pub passwords: HashMap<String, Vec<u8>>,
    pub verify_at_once: bool,
    pub pending_verifications: Vec<(usize, ConnId, String, Vec<u8>)>,
    /// The store the shards' recorded ops go to, when persistence is on: each shard's ops
    /// are applied before any of its output is delivered and before each of its actions is
    /// carried out, durably when the output promises them (as `sync` mode does).
    pub store: Option<starling_store::SimStore>,
    /// The ops of one batch (kept for its capacity).
    ops: Vec<starling::core::persist::Op>,
    /// A simulated crash: after this many more driver steps (a batch applied, an action
    /// carried out, a connection's output delivered) the driver stops for good.
    pub crash_after_steps: Option<usize>,
    /// Whether the driver was refused a step by `crash_after_steps` (the crash came).
    crashed: bool,
}

/// A handle to a client of a [`Net`].
pub type ClientId = usize;

impl Net {
    pub fn new(loops: usize, config: CoreConfig) -> Net {
        // A fixed key for assigned client ids: a run replays the same.
        let shared = Arc::new(Shared::new(loops, [0; ASSIGNED_ID_KEY_BYTES]));
        let shards = (0..loops)
            .map(|i| {
                Shard::new(i, loops, config.clone(), Arc::clone(&shared)).expect("valid config")
            })
            .collect();
        Net {
            shards,
            shared,
            clients: Vec::new(),
            now_ms: 0,
            by_conn: HashMap::new(),
            dirty: Vec::new(),
            passwords: HashMap::new(),
            verify_at_once: true,
            pending_verifications: Vec::new(),
            store: None,
            ops: Vec::new(),
            crash_after_steps: None,
            crashed: false,
        }
    }

    /// Whether the simulated crash has come: the driver was refused a step (input may
    /// still have reached a shard and changed it, as a socket read does just before a
    /// crash; nothing of it was stored or answered).
    pub fn crashed(&self) -> bool {
        self.crashed
    }

    /// Counts one driver step toward the simulated crash; false once it has come.
    fn step(&mut self) -> bool {
        match &mut self.crash_after_steps {
            None => true,
            Some(0) => {
                self.crashed = true;
                false
            }
            Some(n) => {
                *n -= 1;
                true
            }
        }
    }

    /// A network whose shards record for `store` (`sync` mode) and have rebuilt what it
    /// holds, as a broker started on it at wall time `wall_ms` does.
    pub fn restarted(
        loops: usize,
        config: CoreConfig,
        mut store: starling_store::SimStore,
        wall_ms: u64,
    ) -> Net {
        use starling::core::persist::{PersistShared, codec::WallClock, restore};
        use starling_store::{Durability, Store};
        let clock = WallClock { offset_ms: wall_ms };
        let recovered = store.load().expect("the simulated store loads");
        let mut plan = restore::plan(recovered, loops, clock, wall_ms).expect("the records decode");
        store
            .apply(&std::mem::take(&mut plan.purge), Durability::Durable)
            .expect("purge");
        let persist = PersistShared::enabled(clock, plan.first_message_id, plan.first_seq);
        let shared =
            Arc::new(Shared::new(loops, [0; ASSIGNED_ID_KEY_BYTES]).with_persistence(persist));
        if let Ok(mut retained) = shared.retained.lock() {
            for (topic, message) in std::mem::take(&mut plan.retained) {
                retained.set(&topic, message).expect("a stored topic fits");
            }
        }
        let mut net = Net::new(loops, config);
        net.shared = Arc::clone(&shared);
        net.shards = (0..loops)
            .map(|i| Shard::new(i, loops, net.config_of(i), Arc::clone(&shared)).expect("valid"))
            .collect();
        net.store = Some(store);
        for (i, sessions) in plan.sessions.into_iter().enumerate() {
            net.shards[i].restore_sessions(sessions, 0);
        }
        for (i, routes) in plan.routes.into_iter().enumerate() {
            net.shards[i].restore_routes(routes, 0);
        }
        net.run();
        net
    }

    fn config_of(&self, loop_index: usize) -> CoreConfig {
        self.shards[loop_index].config().clone()
    }

    /// Applies what shard `loop_index` recorded to the store, durably (nothing without
    /// one); false once the simulated crash has come.
    fn persist(&mut self, loop_index: usize) -> bool {
        use starling_store::{Durability, Store};
        if self.store.is_none() {
            return true;
        }
        self.shards[loop_index].pump_deferred(self.now_ms);
        if !self.shards[loop_index].has_persist_ops() {
            return true;
        }
        if !self.step() {
            return false;
        }
        let (Some(store), shard) = (self.store.as_mut(), &mut self.shards[loop_index]) else {
            return true;
        };
        // As `sync` mode: durable when the output promises something, else buffered (a
        // crash loses it unless a later durable batch came).
        let durability = if shard.persist_ops_urgent() {
            Durability::Durable
        } else {
            Durability::Buffered
        };
        shard.take_persist_ops(&mut self.ops);
        self.shared.persist.take_retained(&mut self.ops);
        store
            .apply(&self.ops, durability)
            .expect("the simulated store applies");
        self.ops.clear();
        true
    }

    /// A small pool so tests start fast.
    pub fn small_config() -> CoreConfig {
        let mut config = CoreConfig::default();
        config.pool.initial_objects = 16;
        config.pool.max_preheated_objects = 1024;
        config.pool.max_live_objects = 4096;
        config
    }

    /// Opens a socket-less connection on loop `loop_index`.
    pub fn open(&mut self, loop_index: usize) -> ClientId {
        let conn = self.shards[loop_index]
            .accept(self.now_ms)
            .expect("pool has room");
        let id = self.clients.len();
        self.clients.push(Client {
            loop_index,
            conn: Some(conn),
            bytes: Vec::new(),
            received: Vec::new(),
            closed: false,
            v5: false,
            sent_connect: false,
            ack_reasons: Vec::new(),
        });
        self.by_conn.insert((loop_index, conn), id);
        id
    }

    /// Sends raw bytes from a client and runs the network until it is quiet.
    pub fn send(&mut self, client: ClientId, bytes: &[u8]) {
        let c = &mut self.clients[client];
        if bytes.first() == Some(&0x10) && c.conn.is_some() && !c.sent_connect {
            // A CONNECT: its protocol level (after the fixed header and "MQTT") says v5.
            let header = check_frame(bytes, usize::MAX).map_or(2, |h| h.header_len);
            c.v5 = bytes.get(header + 6) == Some(&5);
            c.sent_connect = true;
        }
        if let (Some(conn), false) = (c.conn, c.closed) {
            let loop_index = c.loop_index;
            self.shards[loop_index].receive(conn, bytes, self.now_ms);
        }
        self.run();
    }

    /// Opens a connection, sends CONNECT and returns the client with its CONNACK taken.
    pub fn connect(&mut self, loop_index: usize, spec: ConnectSpec) -> (ClientId, Received) {
        let client = self.open(loop_index);
        self.send(client, &spec.build());
        let received = &mut self.clients[client].received;
        assert!(!received.is_empty(), "no CONNACK");
        let connack = received.remove(0);
        (client, connack)
    }

    /// Connects a 3.1.1 client with `client_id` and `clean_session`, asserting success.
    pub fn connect_ok(&mut self, client_id: &str, clean_session: bool) -> ClientId {
        let spec = ConnectSpec {
            client_id: client_id.as_bytes().to_vec(),
            clean_session,
            ..ConnectSpec::default()
        };
        // Opened where the kernel's SO_REUSEPORT hash might put it: spread over the loops.
        let loop_index = starling::core::owner_loop(client_id, self.shards.len());
        let (client, connack) = self.connect(loop_index, spec);
        assert!(
            matches!(connack, Received::ConnAck { code: 0, .. }),
            "{connack:?}"
        );
        client
    }

    pub fn subscribe(
        &mut self,
        client: ClientId,
        packet_id: u16,
        filter: &str,
        qos: u8,
    ) -> Vec<u8> {
        self.send(
            client,
            &packets::subscribe(packet_id, &[(filter.as_bytes(), qos)]),
        );
        let received = self.take(client);
        match received.first() {
            Some(Received::SubAck {
                packet_id: id,
                codes,
            }) if *id == packet_id => codes.clone(),
            other => panic!("expected SUBACK {packet_id}, got {other:?}"),
        }
    }

    pub fn publish(
        &mut self,
        client: ClientId,
        topic: &str,
        qos: u8,
        retain: bool,
        packet_id: Option<u16>,
        payload: &[u8],
    ) {
        let flags = (qos << 1) | u8::from(retain);
        self.send(
            client,
            &packets::publish(flags, topic.as_bytes(), packet_id, payload),
        );
    }

    /// The packets a client received since the last `take`.
    pub fn take(&mut self, client: ClientId) -> Vec<Received> {
        std::mem::take(&mut self.clients[client].received)
    }

    /// Closes a client's socket without DISCONNECT (network loss).
    pub fn drop_connection(&mut self, client: ClientId) {
        let c = &mut self.clients[client];
        if let (Some(conn), false) = (c.conn, c.closed) {
            c.closed = true;
            let loop_index = c.loop_index;
            self.shards[loop_index].closed(conn, self.now_ms);
        }
        self.run();
    }

    /// Advances the clock and ticks every shard.
    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
        for shard in &mut self.shards {
            shard.tick(self.now_ms);
        }
        self.run();
    }

    pub fn is_closed(&self, client: ClientId) -> bool {
        self.clients[client].closed
    }

    /// Carries out actions and delivers output until nothing is left to do.
    pub fn run(&mut self) {
        loop {
            let mut busy = false;
            for loop_index in 0..self.shards.len() {
                if !self.persist(loop_index) {
                    return;
                }
                while let Some(action) = self.shards[loop_index].poll_action() {
                    busy = true;
                    if !self.persist(loop_index) || !self.step() {
                        return;
                    }
                    self.act(loop_index, action);
                }
                if !self.persist(loop_index) {
                    return;
                }
                let mut dirty = std::mem::take(&mut self.dirty);
                self.shards[loop_index].drain_dirty(&mut dirty);
                for &conn in &dirty {
                    busy = true;
                    if !self.step() {
                        return;
                    }
                    self.flush(loop_index, conn);
                }
                self.dirty = dirty;
            }
            if !busy {
                return;
            }
        }
    }

    fn flush(&mut self, loop_index: usize, conn: ConnId) {
        let shard = &mut self.shards[loop_index];
        let bytes = shard.output(conn).to_vec();
        shard.consume_output(conn, bytes.len(), self.now_ms);
        if let Some(&client) = self.by_conn.get(&(loop_index, conn)) {
            let c = &mut self.clients[client];
            if !c.closed {
                c.bytes.extend_from_slice(&bytes);
                parse(c);
            }
        }
    }

    fn act(&mut self, loop_index: usize, action: Action) {
        match action {
            Action::Close(conn) => {
                self.flush(loop_index, conn);
                if let Some(&client) = self.by_conn.get(&(loop_index, conn)) {
                    self.clients[client].closed = true;
                }
                self.shards[loop_index].closed(conn, self.now_ms);
            }
            Action::Handover { conn, to, bytes } => {
                let client = self
                    .by_conn
                    .remove(&(loop_index, conn))
                    .expect("known connection");
                let new_conn = self.shards[to].accept(self.now_ms).expect("room");
                self.by_conn.insert((to, new_conn), client);
                let c = &mut self.clients[client];
                c.loop_index = to;
                c.conn = Some(new_conn);
                self.shards[to].receive(new_conn, &bytes, self.now_ms);
            }
            Action::Forward {
                to,
                message,
                origin,
            } => self.shards[to].remote(message, origin, self.now_ms),
            Action::ForwardShared {
                to,
                pick,
                message,
                origin,
            } => self.shards[to].remote_shared(pick, message, origin, self.now_ms),
            Action::Hold { to, conn, hold } => {
                self.shards[to].hold_publisher(conn, hold, self.now_ms)
            }
            // The failure delay is the driver's: none here.
            Action::DelayRefusal { conn } => self.shards[loop_index].credentials_checked(
                conn,
                starling::core::credentials::Verdict::Refused,
                self.now_ms,
            ),
            Action::Authenticate {
                conn,
                username,
                password,
                ..
            } => {
                self.pending_verifications
                    .push((loop_index, conn, username.into(), password));
                if self.verify_at_once {
                    self.answer_verifications();
                }
            }
        }
    }

    /// Answers every verification asked so far against [`Net::passwords`].
    pub fn answer_verifications(&mut self) {
        for (loop_index, conn, user, password) in std::mem::take(&mut self.pending_verifications) {
            let verdict = if self.passwords.get(&user) == Some(&password) {
                starling::core::credentials::Verdict::Accepted
            } else {
                starling::core::credentials::Verdict::Refused
            };
            self.shards[loop_index].credentials_checked(conn, verdict, self.now_ms);
        }
    }
}

fn parse(client: &mut Client) {
    loop {
        let version = if client.v5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V311
        };
        let header = match check_frame_for(version, &client.bytes, usize::MAX) {
            Ok(header) if client.bytes.len() >= header.frame_len() => header,
            Ok(_) | Err(FrameError::Incomplete { .. }) => return,
            Err(error) => panic!("the broker sent a bad frame: {error:?}"),
        };
        let frame: Vec<u8> = client.bytes.drain(..header.frame_len()).collect();
        if client.v5 {
            let packet_type = header.packet_type;
            if let (
                PacketType::PubAck | PacketType::PubRec | PacketType::PubRel | PacketType::PubComp,
                [hi, lo, rest @ ..],
            ) = (packet_type, &frame[header.header_len..])
            {
                // The reason code is left out when it is 0x00 (§3.4.2.1).
                let reason = rest.first().copied().unwrap_or(0);
                let id = u16::from_be_bytes([*hi, *lo]);
                client.ack_reasons.push((packet_type, id, reason));
            }
            client
                .received
                .push(parse_v5(&frame, header.header_len, packet_type));
            continue;
        }
        let body = &frame[header.header_len..];
        let id = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
        let packet = match header.packet_type {
            PacketType::ConnAck => Received::ConnAck {
                session_present: body[0] & 1 == 1,
                code: body[1],
            },
            PacketType::Publish => {
                let flags = header.flags;
                let qos = (flags >> 1) & 3;
                let topic_len = id(body) as usize;
                let topic =
                    String::from_utf8(body[2..2 + topic_len].to_vec()).expect("UTF-8 topic");
                let mut at = 2 + topic_len;
                let packet_id = (qos > 0).then(|| {
                    at += 2;
                    id(&body[at - 2..])
                });
                Received::Publish {
                    topic,
                    payload: body[at..].to_vec(),
                    qos,
                    retain: flags & 1 == 1,
                    dup: flags & 8 == 8,
                    packet_id,
                }
            }
            PacketType::PubAck => Received::PubAck(id(body)),
            PacketType::PubRec => Received::PubRec(id(body)),
            PacketType::PubRel => {
                assert_eq!(header.flags, 2, "PUBREL flags (MQTT-3.6.1-1)");
                Received::PubRel(id(body))
            }
            PacketType::PubComp => Received::PubComp(id(body)),
            PacketType::SubAck => Received::SubAck {
                packet_id: id(body),
                codes: body[2..].to_vec(),
            },
            PacketType::UnsubAck => Received::UnsubAck(id(body)),
            PacketType::PingResp => Received::PingResp,
            other => panic!("a server does not send {other:?}"),
        };
        client.received.push(packet);
    }
}

/// A packet to an MQTT 5 client.
fn parse_v5(frame: &[u8], header_len: usize, packet_type: PacketType) -> Received {
    use starling::protocol::v5::decode_publish_from_server;
    let body = &frame[header_len..];
    let id = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
    // After a packet id: a property length (a varint), the properties, then the payload.
    let after_props = |at: usize| -> usize {
        let (mut len, mut shift, mut i) = (0usize, 0, at);
        loop {
            let b = body[i];
            len |= usize::from(b & 0x7F) << shift;
            i += 1;
            shift += 7;
            if b & 0x80 == 0 {
                return i + len;
            }
        }
    };
    match packet_type {
        PacketType::ConnAck => Received::ConnAck {
            session_present: body[0] & 1 == 1,
            code: body[1],
        },
        PacketType::Publish => {
            let p = decode_publish_from_server(frame).expect("a valid v5 PUBLISH");
            Received::Publish5 {
                topic: p.topic.to_string(),
                payload: p.payload.to_vec(),
                qos: p.qos.as_u8(),
                retain: p.retain,
                dup: p.dup,
                packet_id: p.packet_id,
                sub_ids: p.properties.subscription_identifiers.iter().collect(),
                expiry_secs: p.properties.message_expiry_interval_secs,
                user_properties: p
                    .properties
                    .user_properties
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_string()))
                    .collect(),
                topic_alias: p.properties.topic_alias.map(|a| a.get()),
            }
        }
        PacketType::PubAck => Received::PubAck(id(body)),
        PacketType::PubRec => Received::PubRec(id(body)),
        PacketType::PubRel => Received::PubRel(id(body)),
        PacketType::PubComp => Received::PubComp(id(body)),
        PacketType::SubAck => Received::SubAck {
            packet_id: id(body),
            codes: body[after_props(2)..].to_vec(),
        },
        PacketType::UnsubAck => Received::UnsubAck5 {
            packet_id: id(body),
            codes: body[after_props(2)..].to_vec(),
        },
        PacketType::PingResp => Received::PingResp,
        PacketType::Disconnect => Received::Disconnect(body.first().copied().unwrap_or(0)),
        PacketType::Auth => Received::Auth {
            reason: body[0],
            data: auth_data(&body[1..]),
        },
        other => panic!("a server does not send {other:?}"),
    }
}

/// The Authentication Data (0x16) of an AUTH property block (after the reason code).
fn auth_data(block: &[u8]) -> Option<Vec<u8>> {
    let mut at = 1; // a one-byte property length: the tests' blocks are short
    while at < block.len() {
        let id = block[at];
        let len = usize::from(u16::from_be_bytes([block[at + 1], block[at + 2]]));
        let value = &block[at + 3..at + 3 + len];
        if id == 0x16 {
            return Some(value.to_vec());
        }
        at += 3 + len; // 0x15 Authentication Method and 0x1F Reason String: length-prefixed
    }
    None
}

/// The PUBLISH packets among `received`.
pub fn publishes(received: &[Received]) -> Vec<(String, Vec<u8>, u8)> {
    received
        .iter()
        .filter_map(|r| match r {
            Received::Publish {
                topic,
                payload,
                qos,
                ..
            } => Some((topic.clone(), payload.clone(), *qos)),
            Received::Publish5 {
                topic,
                payload,
                qos,
                ..
            } => Some((topic.clone(), payload.clone(), *qos)),
            _ => None,
        })
        .collect()
}
