//! The access policy in the core (`core::access`, `core::credentials`), driven in memory:
//! anonymous clients, CONNECTs parked while their password is verified (and the packets that
//! wait behind them), session takeover by another user, the ACL on PUBLISH, SUBSCRIBE and
//! delivery, wills, `$` topics, and what a reload does to connected clients.

mod core_common;
mod core_v5_common;
mod protocol_common;

use std::sync::Arc;

use core_common::{Net, Received, publishes};
use protocol_common::{self as packets, ConnectSpec};
use starling::acl::Acl;
use starling::core::access::{AccessPolicy, ListenerAccess, SessionTakeover, UserDirectory};

const NOT_AUTHORIZED_V3: u8 = 0x05;
const BAD_CREDENTIALS_V3: u8 = 0x04;

/// A user list for the policy: who is in the password file.
struct Users(Vec<&'static str>);

impl UserDirectory for Users {
    fn has_user(&self, username: &str) -> bool {
        self.0.contains(&username)
    }
}

/// One loop whose listener verifies passwords against `passwords`, with `acl`.
fn net_with(passwords: &[(&'static str, &str)], acl: Option<&str>, anonymous: bool) -> Net {
    let mut net = Net::new(1, Net::small_config());
    for (user, password) in passwords {
        net.passwords
            .insert((*user).to_string(), password.as_bytes().to_vec());
    }
    let policy = policy(
        passwords.iter().map(|(u, _)| *u).collect(),
        acl,
        anonymous,
        1,
    );
    net.shards[0].set_access(policy, 0);
    net
}

fn policy(
    users: Vec<&'static str>,
    acl: Option<&str>,
    anonymous: bool,
    generation: u64,
) -> AccessPolicy {
    let listener = ListenerAccess {
        allow_anonymous: anonymous,
        users: Some(Arc::new(Users(users)) as Arc<dyn UserDirectory>),
        acl: acl.map(|text| Arc::new(Acl::parse(text, "test.acl").expect("valid ACL"))),
        session_takeover: SessionTakeover::SameUser,
        identity_as_username: false,
    };
    AccessPolicy::new(vec![listener], generation)
}

fn login(client_id: &str, user: Option<&str>, password: Option<&str>) -> ConnectSpec {
    ConnectSpec {
        client_id: client_id.as_bytes().to_vec(),
        username: user.map(|u| u.as_bytes().to_vec()),
        password: password.map(|p| p.as_bytes().to_vec()),
        ..ConnectSpec::default()
    }
}

fn connack_code(received: &Received) -> u8 {
    match received {
        Received::ConnAck { code, .. } => *code,
        other => panic!("expected CONNACK, got {other:?}"),
    }
}

#[test]
fn anonymous_clients_are_refused_where_the_listener_does_not_allow_them() {
    let mut net = net_with(&[("alice", "secret")], None, false);
    let (client, connack) = net.connect(0, login("anon", None, None));
    assert_eq!(connack_code(&connack), NOT_AUTHORIZED_V3);
    assert!(net.is_closed(client));
    let (_, connack) = net.connect(0, login("alice-1", Some("alice"), Some("secret")));
    assert_eq!(connack_code(&connack), 0);
}

#[test]
fn a_wrong_password_or_unknown_user_gets_0x04() {
    let mut net = net_with(&[("alice", "secret")], None, false);
    let (client, connack) = net.connect(0, login("a", Some("alice"), Some("wrong")));
    assert_eq!(connack_code(&connack), BAD_CREDENTIALS_V3);
    assert!(net.is_closed(client));
    let (_, connack) = net.connect(0, login("b", Some("mallory"), Some("secret")));
    assert_eq!(connack_code(&connack), BAD_CREDENTIALS_V3);
}

#[test]
fn packets_sent_behind_a_parked_connect_wait_for_the_verdict() {
    let mut net = net_with(&[("alice", "secret"), ("bob", "pw")], None, false);
    let watcher = {
        let (client, connack) = net.connect(0, login("watcher", Some("bob"), Some("pw")));
        assert_eq!(connack_code(&connack), 0);
        client
    };
    assert_eq!(net.subscribe(watcher, 1, "t", 1), vec![1]);
    net.verify_at_once = false;
    // CONNECT, then a QoS 1 PUBLISH in the same read, before any CONNACK.
    let client = net.open(0);
    let mut bytes = login("alice-1", Some("alice"), Some("secret")).build();
    bytes.extend(packets::publish(0x02, b"t", Some(7), b"early"));
    net.send(client, &bytes);
    assert!(net.take(client).is_empty(), "nothing before the verdict");
    assert!(publishes(&net.take(watcher)).is_empty(), "not routed yet");
    net.answer_verifications();
    net.run();
    let got = net.take(client);
    assert!(
        matches!(got.first(), Some(Received::ConnAck { code: 0, .. })),
        "{got:?}"
    );
    assert!(got.contains(&Received::PubAck(7)), "{got:?}");
    assert_eq!(
        publishes(&net.take(watcher)),
        vec![("t".into(), b"early".to_vec(), 1)]
    );
}

#[test]
fn a_parked_connect_still_has_its_connect_timeout() {
    let mut net = net_with(&[("alice", "secret")], None, false);
    net.verify_at_once = false;
    let client = net.open(0);
    net.send(
        client,
        &login("alice-1", Some("alice"), Some("secret")).build(),
    );
    net.advance(60_000);
    assert!(net.is_closed(client), "closed at the connect timeout");
    // The verdict for a connection gone since is ignored.
    net.answer_verifications();
    net.run();
}

#[test]
fn another_user_cannot_take_over_a_session() {
    let mut net = net_with(&[("alice", "a"), ("bob", "b")], None, false);
    let (first, connack) = net.connect(0, login("device-1", Some("alice"), Some("a")));
    assert_eq!(connack_code(&connack), 0);
    let (thief, connack) = net.connect(0, login("device-1", Some("bob"), Some("b")));
    assert_eq!(connack_code(&connack), NOT_AUTHORIZED_V3);
    assert!(net.is_closed(thief));
    assert!(!net.is_closed(first), "the owner stays connected");
    let (_, connack) = net.connect(0, login("device-1", Some("alice"), Some("a")));
    assert_eq!(connack_code(&connack), 0, "its own user takes over");
    assert!(net.is_closed(first));
}

const ACL: &str = "\
user alice
topic readwrite a/#
topic read $SYS/#
user bob
topic read a/public/#
topic write b/#
";

#[test]
fn publishes_without_write_access_are_acknowledged_and_not_routed_in_3_1_1() {
    let mut net = net_with(&[("alice", "a"), ("bob", "b")], Some(ACL), false);
    let (alice, _) = net.connect(0, login("alice-1", Some("alice"), Some("a")));
    let (bob, _) = net.connect(0, login("bob-1", Some("bob"), Some("b")));
    assert_eq!(net.subscribe(alice, 1, "a/#", 1), vec![1]);
    net.publish(bob, "a/x", 1, false, Some(3), b"denied");
    assert_eq!(
        net.take(bob),
        vec![Received::PubAck(3)],
        "3.1.1 cannot say no"
    );
    assert!(publishes(&net.take(alice)).is_empty());
    net.publish(alice, "a/x", 0, false, None, b"mine");
    assert_eq!(
        publishes(&net.take(alice)),
        vec![("a/x".into(), b"mine".to_vec(), 0)]
    );
    assert_eq!(net.shards[0].stats().denied_publish, 1);
}

#[test]
fn subscriptions_are_refused_granted_or_checked_per_delivery() {
    let mut net = net_with(&[("alice", "a"), ("bob", "b")], Some(ACL), false);
    let (alice, _) = net.connect(0, login("alice-1", Some("alice"), Some("a")));
    let (bob, _) = net.connect(0, login("bob-1", Some("bob"), Some("b")));
    assert_eq!(
        net.subscribe(bob, 1, "b/#", 0),
        vec![0x80],
        "write-only: never readable"
    );
    assert_eq!(
        net.subscribe(bob, 2, "a/#", 0),
        vec![0],
        "partly readable: granted"
    );
    net.publish(alice, "a/secret", 0, false, None, b"no");
    net.publish(alice, "a/public/x", 0, false, None, b"yes");
    assert_eq!(
        publishes(&net.take(bob)),
        vec![("a/public/x".into(), b"yes".to_vec(), 0)]
    );
    let stats = net.shards[0].stats();
    assert_eq!((stats.denied_subscribe, stats.denied_delivery), (1, 1));
}

#[test]
fn retained_messages_on_subscribe_obey_read_access() {
    let mut net = net_with(&[("alice", "a"), ("bob", "b")], Some(ACL), false);
    let (alice, _) = net.connect(0, login("alice-1", Some("alice"), Some("a")));
    net.publish(alice, "a/secret", 0, true, None, b"no");
    net.publish(alice, "a/public/x", 0, true, None, b"yes");
    let (bob, _) = net.connect(0, login("bob-1", Some("bob"), Some("b")));
    // The SUBACK and the retained messages after it, in one take.
    net.send(bob, &packets::subscribe(1, &[(b"a/#".as_slice(), 0)]));
    let got: Vec<String> = publishes(&net.take(bob)).into_iter().map(|p| p.0).collect();
    assert_eq!(got, vec!["a/public/x".to_string()]);
}

#[test]
fn no_client_publishes_to_a_dollar_topic_and_wills_obey_write_access() {
    let mut net = net_with(&[("alice", "a"), ("bob", "b")], Some(ACL), false);
    let (alice, _) = net.connect(0, login("alice-1", Some("alice"), Some("a")));
    assert_eq!(net.subscribe(alice, 1, "$SYS/#", 0), vec![0]);
    net.publish(alice, "$SYS/broker/version", 0, true, None, b"spoofed");
    assert!(publishes(&net.take(alice)).is_empty());
    let mut spec = login("bob-2", Some("bob"), Some("b"));
    spec.will = Some((b"a/will".to_vec(), b"w".to_vec(), 0, false));
    let (_, connack) = net.connect(0, spec);
    assert_eq!(
        connack_code(&connack),
        NOT_AUTHORIZED_V3,
        "bob may not write a/will"
    );
    let mut spec = login("bob-3", Some("bob"), Some("b"));
    spec.will = Some((b"b/will".to_vec(), b"w".to_vec(), 0, false));
    let (_, connack) = net.connect(0, spec);
    assert_eq!(connack_code(&connack), 0);
}

#[test]
fn a_reload_disconnects_removed_users_and_reclassifies_subscriptions() {
    let mut net = net_with(&[("alice", "a"), ("bob", "b")], Some(ACL), false);
    let (alice, _) = net.connect(0, login("alice-1", Some("alice"), Some("a")));
    let (bob, _) = net.connect(0, login("bob-1", Some("bob"), Some("b")));
    assert_eq!(net.subscribe(alice, 1, "a/#", 0), vec![0]);
    // bob is gone; alice may now read a/public only.
    let narrower = "user alice\ntopic read a/public/#\ntopic write a/#\n";
    let now = net.now_ms;
    net.shards[0].set_access(policy(vec!["alice"], Some(narrower), false, 2), now);
    net.run();
    assert!(net.is_closed(bob), "a removed user is disconnected");
    assert!(!net.is_closed(alice));
    net.publish(alice, "a/secret", 0, false, None, b"no");
    net.publish(alice, "a/public/1", 0, false, None, b"yes");
    let got: Vec<String> = publishes(&net.take(alice))
        .into_iter()
        .map(|p| p.0)
        .collect();
    assert_eq!(got, vec!["a/public/1".to_string()]);
    assert_eq!(net.shards[0].stats().disconnected_user_removed, 1);
}
