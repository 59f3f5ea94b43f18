#!/usr/bin/env bash
# What password authentication and an ACL cost (docs/benchmarks.md, "Authentication and
# access control"). Writes the password and ACL files into the results dir, then runs
# scripts/compare.sh once per part, brokers alternating within each invocation, a freshly
# started broker per run:
#
#   scripts/bench-auth.sh [connect] [argon2] [acl] [acl-mosquitto]     (default: all four)
#
#   connect  churn --clients USERS --cycles 2, every client its own user (user0..): cycle 1
#            is each user's first login (a full key derivation), cycle 2 the same logins
#            again (remembered by Starling). Starling and Mosquitto without a password file
#            (the user name is taken as given) and with the same $7$ file (mosquitto_passwd).
#   argon2   the same at ARGON2_USERS clients, adding Starling with an $argon2id$ file
#            (`starling passwd`, its default hash): first logins are slow by design.
#   acl      QoS 0 fanin (100 -> 1) and fanout (1 -> 100), clients logged in as bench0..
#            (no password file), Starling with and without an ACL of 1 000 rules (see
#            write_acl for what governs the benchmark's clients).
#   acl-mosquitto  the same for Mosquitto, MOSQUITTO_RUNS (3) runs of MOSQUITTO_ACL_SECS
#            (2) s: Mosquitto takes tens of seconds to deliver what it accepted in 5 s.
#
# Environment: RUNS (default 5), USERS (2000), ARGON2_USERS (200), ACL_SECS (publishing
# seconds, 5), SKIP_BUILD=1 and BIN_DIR (as compare.sh), RESULTS_DIR (a new directory;
# default target/bench-auth/DATE-TIME). Each part's results are in RESULTS_DIR/PART, its
# table in RESULTS_DIR/PART.md (compare_report.py, then every run and the ratios:
# runs_report.py). Brokers are started and stopped by compare.sh, by PID.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${BIN_DIR:-$root/target/release}"
export BIN_DIR="$bin_dir"
runs="${RUNS:-5}"
users="${USERS:-2000}"
argon2_users="${ARGON2_USERS:-200}"
acl_secs="${ACL_SECS:-5}"
mosquitto_runs="${MOSQUITTO_RUNS:-3}"
mosquitto_acl_secs="${MOSQUITTO_ACL_SECS:-2}"
password="bench-pw"
parts=("$@")
[[ ${#parts[@]} -gt 0 ]] || parts=(connect argon2 acl acl-mosquitto)
for part in "${parts[@]}"; do
    case "$part" in
    connect | argon2 | acl | acl-mosquitto) ;;
    *)
        sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
    esac
done
command -v mosquitto_passwd >/dev/null || {
    echo "mosquitto_passwd is not installed (apt-get install mosquitto)" >&2
    exit 2
}
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$root" && cargo build --release -p starling -p starling-loadtest)
fi
export SKIP_BUILD=1
results="${RESULTS_DIR:-$root/target/bench-auth/$(date +%Y%m%d-%H%M%S)}"
if [[ -e "$results" && -n "$(ls -A "$results")" ]]; then
    echo "RESULTS_DIR=$results is not empty: give a new directory" >&2
    exit 2
fi
files="$results/files"
mkdir -p "$files"

# user0..user(N-1), all with the same password, hashed by mosquitto_passwd ($7$: PBKDF2-
# SHA512, 101 iterations, a salt per user).
write_pbkdf2() {
    local n=$1 file="$files/pbkdf2.passwd"
    for ((i = 0; i < n; i++)); do
        echo "user$i:$password"
    done >"$file"
    mosquitto_passwd -U "$file"
}

# user0..user(N-1) hashed by `starling passwd` (its default, argon2id m=19 MiB, t=2).
write_argon2id() {
    local n=$1 file="$files/argon2id.passwd"
    : >"$file"
    for ((i = 0; i < n; i++)); do
        "$bin_dir/starling" passwd -b "$file" "user$i" "$password"
    done
}

# The ACL, 1 000 rules: one anonymous rule; 176 users of 5 rules each that no benchmark
# client is (their sections are in the user table all the same); 15 patterns with %c / %u
# that match none of the benchmark's topics; and the benchmark's own clients, bench0..bench100
# (the harness's --username-prefix bench: fanin's subscriber is bench0 and its publisher i
# bench(i+1); fanout's subscriber i is bench(i), its publisher bench100), 103 rules and one
# pattern:
#   - fanin publishers: each may write only its own topic, by its user section
#     (`topic write lt/+/fanin/I`); every PUBLISH is checked (the session's memo of the
#     last topic answers after the first);
#   - fanin subscriber: its section grants read on lt/+/fanin/+ and denies
#     lt/+/fanin/private, so its subscription to lt/PID/fanin/+ is classified per-topic:
#     every delivery is checked (the memo of the last topic answers only when consecutive
#     deliveries share a topic: 100 publishers' topics interleave);
#   - fanout publisher: its section grants write on lt/+/fanout;
#   - fanout subscribers: a pattern without substitution grants read on lt/+/fanout to
#     everyone, and their sections say nothing of it, so the subscription is classified
#     always (no check per delivery).
# The harness puts its PID in every topic (lt/PID/...), hence the `+`.
write_acl() {
    local file="$files/acl" i
    {
        echo "# Anonymous clients: \$SYS only."
        echo "topic read \$SYS/#"
        for ((i = 0; i < 176; i++)); do
            echo "user tenant$i"
            echo "topic readwrite tenants/$i/#"
            echo "topic deny tenants/$i/secret/#"
            echo "topic read fleet/$i/+/status"
            echo "topic write fleet/$i/+/cmd"
            echo "topic read shared/+/$i"
        done
        echo "user bench0"
        echo "topic read lt/+/fanin/+"
        echo "topic deny lt/+/fanin/private"
        for ((i = 1; i <= 100; i++)); do
            echo "user bench$i"
            echo "topic write lt/+/fanin/$((i - 1))"
        done
        echo "topic write lt/+/fanout"
        echo "pattern readwrite devices/%c/#"
        echo "pattern deny devices/%c/private/#"
        echo "pattern write telemetry/%u/+"
        echo "pattern read commands/%u/#"
        echo "pattern read \$SYS/broker/connection/%c/state"
        echo "pattern readwrite home/%u/%c/#"
        echo "pattern read config/%u"
        echo "pattern write status/%c"
        echo "pattern readwrite inbox/%u/+"
        echo "pattern deny inbox/%u/admin"
        echo "pattern read alerts/+/%u"
        echo "pattern write logs/%u/%c"
        echo "pattern read fleet/+/%c/cmd"
        echo "pattern read announcements/%u"
        echo "pattern write fleet/+/%c/status"
        echo "pattern read lt/+/fanout"
    } >"$file"
    echo "ACL: $(grep -cE '^(topic|pattern) ' "$file") rules, $(grep -c '^user ' "$file") users" >&2
}

starling_config() {
    local name=$1 key=$2 value=$3
    printf '[auth]\n%s = "%s"\n' "$key" "$value" >"$files/starling-$name.toml"
    echo "--config $files/starling-$name.toml"
}

# Every Starling runs without its metrics endpoint (no port to collide on).
export STARLING_ARGS="--metrics-listen off"

report() {
    local part=$1
    shift
    {
        echo "# $part"
        echo
        python3 "$root/scripts/compare_report.py" "$results/$part"
        python3 "$root/scripts/runs_report.py" "$results/$part" "$@"
    } >"$results/$part.md"
    cat "$results/$part.md"
}

# fanin and fanout against KIND with and without the ACL, RUNS runs of SECS s each.
acl_runs() {
    local part=$1 kind=$2 n=$3 secs=$4
    BROKERS="${kind}_acl $kind" RUNS="$n" RESULTS_DIR="$results/$part" \
        "$root/scripts/compare.sh" \
        "fanin:--publishers 100 --duration-secs $secs --username-prefix bench" \
        "fanout:--subscribers 100 --duration-secs $secs --username-prefix bench" >/dev/null
    report "$part" "${kind}_acl/$kind"
}

for part in "${parts[@]}"; do
    case "$part" in
    connect | argon2)
        [[ -e "$files/pbkdf2.passwd" ]] || write_pbkdf2 "$users"
        STARLING_ARGS_pbkdf2="$(starling_config pbkdf2 password_file "$files/pbkdf2.passwd")"
        export STARLING_ARGS_pbkdf2
        export MOSQUITTO_CONF_EXTRA_pbkdf2="password_file $files/pbkdf2.passwd
allow_anonymous false"
        n=$users
        brokers="starling_pbkdf2 starling mosquitto_pbkdf2 mosquitto"
        pairs=(starling_pbkdf2/starling mosquitto_pbkdf2/mosquitto
            starling_pbkdf2/mosquitto_pbkdf2 starling/mosquitto)
        if [[ "$part" == argon2 ]]; then
            write_argon2id "$argon2_users"
            STARLING_ARGS_argon2id="$(starling_config argon2id password_file "$files/argon2id.passwd")"
            export STARLING_ARGS_argon2id
            n=$argon2_users
            brokers="starling_argon2id $brokers"
            pairs+=(starling_argon2id/starling starling_argon2id/starling_pbkdf2)
        fi
        BROKERS="$brokers" RUNS="$runs" RESULTS_DIR="$results/$part" \
            "$root/scripts/compare.sh" \
            "churn:--clients $n --cycles 2 --username-prefix user --password $password" >/dev/null
        report "$part" "${pairs[@]}"
        ;;
    acl)
        [[ -e "$files/acl" ]] || write_acl
        STARLING_ARGS_acl="$(starling_config acl acl_file "$files/acl")"
        export STARLING_ARGS_acl
        acl_runs acl starling "$runs" "$acl_secs"
        ;;
    acl-mosquitto)
        [[ -e "$files/acl" ]] || write_acl
        export MOSQUITTO_CONF_EXTRA_acl="acl_file $files/acl"
        acl_runs acl-mosquitto mosquitto "$mosquitto_runs" "$mosquitto_acl_secs"
        ;;
    esac
done
echo "results: $results" >&2
