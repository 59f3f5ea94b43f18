//! `Acl::check` allocates nothing: sections, patterns with `%c` / `%u`, hits and misses.

use starling::acl::{Access, Acl, Identity};
use starling_alloc_count::{Counting, calls_during};

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn check_does_not_allocate() {
    let acl = Acl::parse(
        "topic read $SYS/#\nuser roger\ntopic foo/bar\ntopic deny foo/+/x\n\
         pattern write $SYS/broker/connection/%c/state\npattern readwrite sensor/%u/#\n\
         pattern read dev-%c/%u/+\n",
        "<test>",
    )
    .expect("valid ACL");
    let roger = Identity {
        username: Some("roger"),
        client_id: "r1",
    };
    let anonymous = Identity {
        username: None,
        client_id: "a1",
    };
    let cases = [
        (roger, "foo/bar", Access::Write, true),
        (roger, "foo/y/x", Access::Read, false),
        (roger, "sensor/roger/t", Access::Read, true),
        (roger, "dev-r1/roger/z", Access::Read, true),
        (roger, "elsewhere", Access::Read, false),
        (anonymous, "$SYS/broker/uptime", Access::Read, true),
        (
            anonymous,
            "$SYS/broker/connection/a1/state",
            Access::Write,
            true,
        ),
        (anonymous, "sensor/a1/t", Access::Read, false),
    ];
    for (who, topic, access, expected) in cases {
        let mut result = None;
        let calls = calls_during(|| result = Some(acl.check(who, topic, access)));
        assert_eq!(result, Some(expected), "{who:?} {topic} {access:?}");
        assert_eq!(calls, 0, "{who:?} {topic} {access:?}");
    }
}
