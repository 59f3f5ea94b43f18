//! Unit tests: every rule kind, Mosquitto's documentation examples, every parse error.

use super::classify::{covers, overlap};
use super::*;

mod props;

fn acl(text: &str) -> Acl {
    match Acl::parse(text, "<text>") {
        Ok(acl) => acl,
        Err(e) => panic!("{e}"),
    }
}

fn anon(client_id: &str) -> Identity<'_> {
    Identity {
        username: None,
        client_id,
    }
}

fn user<'a>(username: &'a str, client_id: &'a str) -> Identity<'a> {
    Identity {
        username: Some(username),
        client_id,
    }
}

fn can(acl: &Acl, who: Identity<'_>, topic: &str) -> (bool, bool) {
    (
        acl.check(who, topic, Access::Read),
        acl.check(who, topic, Access::Write),
    )
}

const RW: (bool, bool) = (true, true);
const R: (bool, bool) = (true, false);
const W: (bool, bool) = (false, true);
const NONE: (bool, bool) = (false, false);

/// The example of `mosquitto.conf(5)` (acl_file) and `aclfile.example`.
const MOSQUITTO_EXAMPLE: &str = "\
# This affects access control for clients with no username.
topic read $SYS/#

# This only affects clients with username \"roger\".
user roger
topic foo/bar

# This affects all clients.
pattern write $SYS/broker/connection/%c/state
";

#[test]
fn mosquitto_example_anonymous_reads_sys_only() {
    let acl = acl(MOSQUITTO_EXAMPLE);
    assert_eq!(acl.rule_count(), 3);
    assert_eq!(acl.user_count(), 1);
    assert_eq!(can(&acl, anon("c"), "$SYS/broker/uptime"), R);
    assert_eq!(can(&acl, anon("c"), "foo/bar"), NONE);
    assert_eq!(can(&acl, anon("c"), "$SYS/broker/connection/c/state"), RW);
    assert_eq!(can(&acl, anon("c"), "$SYS/broker/connection/d/state"), R);
}

#[test]
fn mosquitto_example_roger_has_foo_bar_readwrite() {
    let acl = acl(MOSQUITTO_EXAMPLE);
    assert_eq!(can(&acl, user("roger", "r1"), "foo/bar"), RW);
    assert_eq!(can(&acl, user("roger", "r1"), "foo/baz"), NONE);
    // The anonymous section is not roger's.
    assert_eq!(can(&acl, user("roger", "r1"), "$SYS/broker/uptime"), NONE);
    assert_eq!(
        can(&acl, user("roger", "r1"), "$SYS/broker/connection/r1/state"),
        W
    );
    // A user without a section gets patterns only.
    assert_eq!(can(&acl, user("bob", "b1"), "foo/bar"), NONE);
    assert_eq!(
        can(&acl, user("bob", "b1"), "$SYS/broker/connection/b1/state"),
        W
    );
}

#[test]
fn user_patterns_substitute_the_user_name() {
    let acl = acl("pattern readwrite sensor/%u/#\npattern read clients/%c\n");
    assert_eq!(can(&acl, user("ann", "c1"), "sensor/ann/t"), RW);
    assert_eq!(can(&acl, user("ann", "c1"), "sensor/ann"), RW);
    assert_eq!(can(&acl, user("ann", "c1"), "sensor/bob/t"), NONE);
    // `%u` never applies without a user name; `%c` does.
    assert_eq!(can(&acl, anon("c1"), "sensor/c1/t"), NONE);
    assert_eq!(can(&acl, anon("c1"), "clients/c1"), R);
    assert_eq!(can(&acl, anon("c1"), "clients/c2"), NONE);
}

#[test]
fn placeholders_inside_a_level_substitute_textually() {
    let acl = acl("pattern read dev-%c/%u@%c/x%%c\n");
    assert_eq!(can(&acl, user("u", "c"), "dev-c/u@c/x%c"), R);
    assert_eq!(can(&acl, user("u", "c"), "dev-c/u@c/x%%c"), NONE);
    assert_eq!(can(&acl, user("u", "d"), "dev-c/u@c/x%c"), NONE);
    // In `topic` lines, `%c` is text.
    let acl = acl_text("topic read a/%c\n");
    assert_eq!(can(&acl, anon("z"), "a/%c"), R);
    assert_eq!(can(&acl, anon("z"), "a/z"), NONE);
}

fn acl_text(text: &str) -> Acl {
    acl(text)
}

#[test]
fn values_with_wildcards_or_slashes_get_no_patterns() {
    let acl = acl("pattern readwrite dev/%c/#\npattern read public/#\nuser a+b\ntopic read mine\n");
    assert_eq!(can(&acl, anon("a/b"), "dev/a/b/x"), NONE);
    assert_eq!(can(&acl, anon("a#"), "public/x"), NONE);
    assert_eq!(can(&acl, anon("ok"), "public/x"), R);
    // The user's own section still applies.
    assert_eq!(can(&acl, user("a+b", "c"), "mine"), R);
    assert_eq!(can(&acl, user("a+b", "c"), "public/x"), NONE);
}

#[test]
fn access_kinds() {
    let acl = acl("topic read r\ntopic write w\ntopic readwrite rw\ntopic both\ntopic deny d\n");
    assert_eq!(can(&acl, anon("c"), "r"), R);
    assert_eq!(can(&acl, anon("c"), "w"), W);
    assert_eq!(can(&acl, anon("c"), "rw"), RW);
    assert_eq!(can(&acl, anon("c"), "both"), RW);
    assert_eq!(can(&acl, anon("c"), "d"), NONE);
    assert_eq!(can(&acl, anon("c"), "other"), NONE);
}

#[test]
fn a_lone_access_word_is_the_topic() {
    // As in Mosquitto: one word after the keyword is the topic, readwrite.
    let acl = acl("topic read\n");
    assert_eq!(can(&acl, anon("c"), "read"), RW);
}

#[test]
fn deny_overrides_grants_of_its_phase_whatever_the_order() {
    let acl =
        acl("topic readwrite a/#\ntopic deny a/secret\nuser u\ntopic deny x/+\ntopic read x/#\n");
    assert_eq!(can(&acl, anon("c"), "a/b"), RW);
    assert_eq!(can(&acl, anon("c"), "a/secret"), NONE);
    assert_eq!(can(&acl, user("u", "c"), "x"), R);
    assert_eq!(can(&acl, user("u", "c"), "x/y"), NONE);
    let acl = acl_text("pattern read p/#\npattern deny p/%c\n");
    assert_eq!(can(&acl, anon("c"), "p/c"), NONE);
    assert_eq!(can(&acl, anon("c"), "p/d"), R);
}

#[test]
fn section_deny_beats_patterns_but_section_grant_beats_pattern_deny() {
    let acl =
        acl("user u\ntopic deny a\ntopic read b\npattern read a\npattern deny b\npattern deny c\n");
    assert_eq!(can(&acl, user("u", "c"), "a"), NONE);
    assert_eq!(can(&acl, user("u", "c"), "b"), R);
    assert_eq!(can(&acl, user("v", "c"), "a"), R);
    assert_eq!(can(&acl, user("v", "c"), "b"), NONE);
}

#[test]
fn sections_of_the_same_user_merge() {
    let acl = acl("user u\ntopic read a\nuser v\ntopic read b\nuser u\ntopic write c\n");
    assert_eq!(acl.user_count(), 2);
    assert_eq!(can(&acl, user("u", "x"), "a"), R);
    assert_eq!(can(&acl, user("u", "x"), "c"), W);
    assert_eq!(can(&acl, user("u", "x"), "b"), NONE);
    assert_eq!(can(&acl, user("v", "x"), "b"), R);
}

#[test]
fn user_names_may_contain_spaces_and_topics_too() {
    let acl = acl("user  John Smith \ntopic read a b/c d\n");
    assert_eq!(can(&acl, user("John Smith", "x"), "a b/c d"), R);
    assert_eq!(can(&acl, user("John", "x"), "a b/c d"), NONE);
}

#[test]
fn dollar_topics_need_a_dollar_rule() {
    let acl = acl("topic read #\ntopic read +/b\ntopic read $SYS/#\ntopic write $x/+\n");
    assert_eq!(can(&acl, anon("c"), "a/b/c"), R);
    assert_eq!(can(&acl, anon("c"), "$SYS/uptime"), R);
    assert_eq!(can(&acl, anon("c"), "$SYS"), R);
    assert_eq!(can(&acl, anon("c"), "$other/b"), NONE);
    assert_eq!(can(&acl, anon("c"), "$x/y"), W);
    assert_eq!(can(&acl, anon("c"), "$x/y/z"), NONE);
    let acl = acl_text("pattern read #\npattern read %c/#\n");
    assert_eq!(can(&acl, anon("c"), "$SYS/x"), NONE);
    assert_eq!(can(&acl, anon("$c"), "$c/x"), R);
}

#[test]
fn wildcards_match_levels() {
    let acl = acl("topic read a/+/c\ntopic read d/#\ntopic read +\n");
    assert_eq!(can(&acl, anon("c"), "a/b/c"), R);
    assert_eq!(can(&acl, anon("c"), "a//c"), R);
    assert_eq!(can(&acl, anon("c"), "a/b/c/d"), NONE);
    assert_eq!(can(&acl, anon("c"), "d"), R);
    assert_eq!(can(&acl, anon("c"), "d/e/f"), R);
    assert_eq!(can(&acl, anon("c"), "x"), R);
    assert_eq!(can(&acl, anon("c"), "x/y"), NONE);
}

#[test]
fn an_empty_file_denies_everything() {
    let acl = acl("# nothing\n\n   \n");
    assert_eq!(acl.rule_count(), 0);
    assert_eq!(can(&acl, anon("c"), "a"), NONE);
    assert_eq!(acl.classify(anon("c"), "#"), FilterClass::Never);
}

#[test]
fn anonymous_clients_without_a_section_get_patterns_without_user_names() {
    let acl = acl("user u\ntopic read a\npattern read p/%c\npattern read q/%u\npattern read r\n");
    assert_eq!(can(&acl, anon("c"), "a"), NONE);
    assert_eq!(can(&acl, anon("c"), "p/c"), R);
    assert_eq!(can(&acl, anon("c"), "r"), R);
    assert_eq!(can(&acl, anon("c"), "q/c"), NONE);
}

#[test]
fn comments_blank_lines_white_space_and_crlf() {
    let acl =
        acl("# comment\r\n\r\n  \t# indented comment\n\ttopic   read   a  \r\n   user   u\t\n");
    assert_eq!(can(&acl, anon("c"), "a"), R);
    assert_eq!(acl.user_count(), 1);
}

fn error(text: &str) -> AclError {
    match Acl::parse(text, "acl.conf") {
        Ok(_) => panic!("accepted {text:?}"),
        Err(e) => e,
    }
}

#[test]
fn every_parse_error_names_its_line() {
    let cases: &[(&str, usize, &str)] = &[
        (
            "topic read a\nbogus line\n",
            2,
            "expected `topic`, `pattern` or `user`, found `bogus`",
        ),
        ("\n\ntopic\n", 3, "`topic` without a topic"),
        ("pattern   \n", 1, "`pattern` without a topic"),
        ("topic reed a\n", 1, "invalid access `reed`"),
        ("topic a b\n", 1, "invalid access `a`"),
        ("user\n", 1, "`user` without a user name"),
        ("user a\nuser  \t \n", 2, "`user` without a user name"),
        (
            "topic read a/#/b\n",
            1,
            "invalid topic filter `a/#/b`: wildcard is not alone",
        ),
        ("pattern read a+\n", 1, "invalid topic filter `a+`"),
        ("topic read a\0b\n", 1, "contains U+0000"),
        ("topic\tread a\n", 1, "found `topic\tread`"),
    ];
    for &(text, line, message) in cases {
        let e = error(text);
        assert_eq!(e.line, line, "{text:?}: {e}");
        assert_eq!(e.file, "acl.conf");
        assert!(e.message.contains(message), "{text:?}: {e}");
        assert!(
            e.to_string().starts_with(&format!("acl.conf:{line}: ")),
            "{e}"
        );
    }
}

#[test]
fn limits_are_enforced() {
    let long = format!("topic read {}\n", "a".repeat(MAX_ACL_LINE_BYTES));
    assert!(error(&long).message.contains("longer than"));
    let deep = format!(
        "\ntopic read {}\n",
        "a/".repeat(crate::topic::MAX_TOPIC_LEVELS) + "a"
    );
    let e = error(&deep);
    assert_eq!(e.line, 2);
    assert!(e.message.contains("levels"), "{e}");
    let long_user = format!("user {}\n", "u".repeat(MAX_ACL_USERNAME_BYTES + 1));
    assert!(error(&long_user).message.contains("user name is longer"));
}

#[test]
fn load_reports_missing_files_and_bad_utf8_by_line() {
    let dir = std::env::temp_dir().join(format!("starling-acl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let missing = Acl::load(&dir.join("missing")).expect_err("missing file");
    assert_eq!(missing.line, 0);
    let bad = dir.join("bad");
    std::fs::write(&bad, b"topic read a\ntopic read \xff\n").expect("write");
    let e = Acl::load(&bad).expect_err("bad UTF-8");
    assert_eq!((e.line, e.message.as_str()), (2, "invalid UTF-8"));
    let good = dir.join("good");
    std::fs::write(&good, MOSQUITTO_EXAMPLE).expect("write");
    assert_eq!(Acl::load(&good).map(|a| a.rule_count()), Ok(3));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

fn lv(filter: &str) -> Vec<&str> {
    filter.split('/').collect()
}

#[test]
fn overlap_and_cover_examples() {
    assert!(overlap(&lv("a/+"), &lv("+/b")));
    assert!(overlap(&lv("a/#"), &lv("a")));
    assert!(!overlap(&lv("#"), &lv("$SYS/x")));
    assert!(overlap(&lv("$SYS/#"), &lv("$SYS/+")));
    assert!(!overlap(&lv("+/x"), &lv("$SYS/x")));
    assert!(!overlap(&lv("a/+"), &lv("a")));
    assert!(covers(&lv("#"), &lv("a/+/#")));
    assert!(!covers(&lv("#"), &lv("$SYS/#")));
    assert!(covers(&lv("+/#"), &lv("#")));
    assert!(!covers(&lv("a/+/#"), &lv("a/#")));
    assert!(covers(&lv("a/#"), &lv("a")));
    assert!(!covers(&lv("a/+"), &lv("a/#")));
    assert!(covers(&lv("+/+"), &lv("a/b")));
    assert!(!covers(&lv("+"), &lv("$x")));
}

#[test]
fn classify_examples() {
    let acl = acl(MOSQUITTO_EXAMPLE);
    assert_eq!(acl.classify(anon("c"), "$SYS/#"), FilterClass::Always);
    assert_eq!(acl.classify(anon("c"), "#"), FilterClass::Never);
    assert_eq!(
        acl.classify(user("roger", "r"), "foo/bar"),
        FilterClass::Always
    );
    assert_eq!(
        acl.classify(user("roger", "r"), "foo/+"),
        FilterClass::PerTopic
    );
    assert_eq!(
        acl.classify(user("roger", "r"), "$SYS/#"),
        FilterClass::Never
    );
    let acl =
        acl_text("topic read a/#\ntopic deny a/secret\npattern read p/%u/#\npattern deny p/%u/x\n");
    assert_eq!(acl.classify(anon("c"), "a/b/#"), FilterClass::Always);
    assert_eq!(acl.classify(anon("c"), "a/+"), FilterClass::PerTopic);
    assert_eq!(acl.classify(anon("c"), "a/secret"), FilterClass::Never);
    assert_eq!(acl.classify(user("u", "c"), "p/u/y/#"), FilterClass::Always);
    assert_eq!(acl.classify(user("u", "c"), "p/u/x"), FilterClass::Never);
    assert_eq!(acl.classify(user("u", "c"), "p/+/y"), FilterClass::PerTopic);
    assert_eq!(acl.classify(user("u/v", "c"), "p/u/y"), FilterClass::Never);
}
