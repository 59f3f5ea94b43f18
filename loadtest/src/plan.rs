//! Who does what in a scenario: every client's id, what it subscribes to and what it
//! publishes, and how many subscribers each publisher's messages should reach.

use std::collections::HashMap;

use crate::cli::{Args, Scenario};

/// One client's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPlan {
    /// MQTT client id.
    pub client_id: String,
    /// Filter it subscribes to before the message phase.
    pub subscribe: Option<String>,
    /// Topic it publishes to in the message phase.
    pub publish: Option<String>,
    /// Its publisher number (the payload's), when it publishes.
    pub publisher_no: u32,
    /// Its subscriber number (the tracker's), when it subscribes.
    pub subscriber_no: u32,
    /// Subscribers each of its messages should reach (a shared-subscription group counts
    /// once).
    pub audience: u64,
    /// The shared-subscription group it is a member of (shared), by number.
    pub group: Option<u32>,
    /// The user name it logs in with (`--username`, `--username-prefix`), if any.
    pub username: Option<String>,
}

/// The `$share` group name the `shared` scenario uses.
pub const SHARE_GROUP: &str = "lt";

/// Every client of a scenario, in connect order (subscribers before publishers, so no
/// message is published before its subscribers are in place).
pub fn clients(args: &Args) -> Vec<ClientPlan> {
    // The PID keeps this run's topics and ids apart from a previous run's leftovers (a
    // broker may still be routing them).
    let run = std::process::id();
    let p = &format!("{}/{run}", args.topic_prefix);
    let c = &format!("{}-{run}", args.client_prefix);
    let mut out = Vec::new();
    let mut push = |client_id: String, subscribe: Option<String>, publish: Option<String>| {
        let n = out.len() as u32;
        out.push(ClientPlan {
            client_id,
            subscribe,
            publish,
            publisher_no: n,
            subscriber_no: n,
            audience: 0,
            group: None,
            username: None,
        });
    };
    match args.scenario {
        Scenario::Shared => {
            let filter = format!("$share/{SHARE_GROUP}/{p}/shared/+");
            for i in 0..args.subscribers {
                push(format!("{c}-member-{i}"), Some(filter.clone()), None);
            }
            for plan in &mut out {
                plan.group = Some(0);
            }
            for i in 0..args.publishers {
                let topic = format!("{p}/shared/{i}");
                out.push(ClientPlan {
                    client_id: format!("{c}-pub-{i}"),
                    subscribe: None,
                    publish: Some(topic),
                    publisher_no: out.len() as u32,
                    subscriber_no: out.len() as u32,
                    audience: 0,
                    group: None,
                    username: None,
                });
            }
        }
        Scenario::Conn | Scenario::Churn => {
            let messages = args.scenario == Scenario::Conn && args.messages > 0;
            for i in 0..args.clients {
                let topic = format!("{p}/c/{i}");
                push(
                    format!("{c}-c-{i}"),
                    (args.subscribe || messages).then(|| topic.clone()),
                    messages.then_some(topic),
                );
            }
        }
        Scenario::Fanin => {
            push(format!("{c}-sub"), Some(format!("{p}/fanin/+")), None);
            for i in 0..args.publishers {
                push(format!("{c}-pub-{i}"), None, Some(format!("{p}/fanin/{i}")));
            }
        }
        Scenario::Fanout => {
            for i in 0..args.subscribers {
                push(format!("{c}-sub-{i}"), Some(format!("{p}/fanout")), None);
            }
            push(format!("{c}-pub"), None, Some(format!("{p}/fanout")));
        }
        Scenario::P2p => {
            for i in 0..args.pairs {
                push(format!("{c}-sub-{i}"), Some(format!("{p}/p2p/{i}")), None);
            }
            for i in 0..args.pairs {
                push(format!("{c}-pub-{i}"), None, Some(format!("{p}/p2p/{i}")));
            }
        }
        // Planned by their own clients (`bulk`).
        Scenario::Retained | Scenario::Subscribe => {}
    }
    set_audiences(&mut out);
    set_usernames(args, &mut out);
    out
}

/// Gives each client its user name: `--username` to all, or `--username-prefix` followed
/// by its place in the connect order (the same in every run of the same flags, so a
/// password or ACL file can be written for them beforehand).
fn set_usernames(args: &Args, plans: &mut [ClientPlan]) {
    for (n, plan) in plans.iter_mut().enumerate() {
        plan.username = match (&args.username, &args.username_prefix) {
            (Some(name), _) => Some(name.clone()),
            (None, Some(prefix)) => Some(format!("{prefix}{n}")),
            (None, None) => None,
        };
    }
}

/// The topic filter of a `$share/{group}/{filter}` subscription (MQTT 5 §4.8.2), if it is
/// one.
fn shared_filter(filter: &str) -> Option<&str> {
    let rest = filter.strip_prefix("$share/")?;
    rest.split_once('/').map(|(_, f)| f)
}

/// Counts, for each publisher, the subscribers whose filter matches its topic (exact
/// filters by lookup, wildcard filters one by one; a shared-subscription group once).
fn set_audiences(plans: &mut [ClientPlan]) {
    let mut exact: HashMap<&str, u64> = HashMap::new();
    let mut wildcards: Vec<&str> = Vec::new();
    let mut groups: Vec<&str> = plans
        .iter()
        .filter_map(|c| c.subscribe.as_deref())
        .filter(|f| shared_filter(f).is_some())
        .collect();
    groups.sort_unstable();
    groups.dedup();
    for filter in groups.iter().filter_map(|f| shared_filter(f)) {
        wildcards.push(filter);
    }
    let plain = plans
        .iter()
        .filter_map(|c| c.subscribe.as_deref())
        .filter(|f| shared_filter(f).is_none());
    for filter in plain {
        if filter.contains(['+', '#']) {
            wildcards.push(filter);
        } else {
            *exact.entry(filter).or_default() += 1;
        }
    }
    let audiences: Vec<u64> = plans
        .iter()
        .map(|c| {
            c.publish.as_deref().map_or(0, |topic| {
                exact.get(topic).copied().unwrap_or(0)
                    + wildcards
                        .iter()
                        .filter(|f| starling::topic::matches(f, topic))
                        .count() as u64
            })
        })
        .collect();
    for (plan, audience) in plans.iter_mut().zip(audiences) {
        plan.audience = audience;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn plan(argv: &[&str]) -> Vec<ClientPlan> {
        let mut full = vec!["starling-loadtest"];
        full.extend_from_slice(argv);
        clients(&Args::parse_from(full))
    }

    #[test]
    fn user_names_follow_the_connect_order() {
        let fanin = plan(&["fanin", "--publishers", "3", "--username-prefix", "b"]);
        let names: Vec<_> = fanin.iter().map(|c| c.username.as_deref()).collect();
        assert_eq!(names, [Some("b0"), Some("b1"), Some("b2"), Some("b3")]);
        assert!(fanin[0].subscribe.is_some() && fanin[3].publish.is_some());
        let fanout = plan(&["fanout", "--subscribers", "2", "--username-prefix", "b"]);
        assert_eq!(fanout[2].username.as_deref(), Some("b2"));
        assert!(fanout[2].publish.is_some());
        let shared = plan(&["conn", "--clients", "2", "--username", "all"]);
        assert!(shared.iter().all(|c| c.username.as_deref() == Some("all")));
        assert!(
            plan(&["conn", "--clients", "2"])
                .iter()
                .all(|c| c.username.is_none())
        );
    }

    #[test]
    fn audiences_follow_the_scenario_shape() {
        let fanin = plan(&["fanin", "--publishers", "3"]);
        assert_eq!(fanin.len(), 4);
        assert!(fanin[1..].iter().all(|c| c.audience == 1));
        let fanout = plan(&["fanout", "--subscribers", "5"]);
        assert_eq!(fanout.last().map(|c| c.audience), Some(5));
        let p2p = plan(&["p2p", "--pairs", "4"]);
        assert!(p2p[4..].iter().all(|c| c.audience == 1));
        let conn = plan(&["conn", "--clients", "3", "--messages", "2"]);
        assert!(conn.iter().all(|c| c.audience == 1));
        // A $share group of 4 receives each message once, whatever its size.
        let shared = plan(&["shared", "--subscribers", "4", "--publishers", "2"]);
        assert_eq!(shared.len(), 6);
        assert!(shared[..4].iter().all(|c| c.group == Some(0)));
        assert!(
            shared[4..]
                .iter()
                .all(|c| c.audience == 1 && c.group.is_none())
        );
    }
}
