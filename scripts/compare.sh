#!/usr/bin/env bash
# Side-by-side load test: Starling and its peers, Mosquitto and rumqttd, each started by
# this script on free loopback ports; the same scenarios run against each, and one markdown
# table at the end with Starling's ratio to each peer (scripts/compare_report.py).
#
#   scripts/compare.sh SCENARIO[:FLAGS]...
#   RUNS=3 scripts/compare.sh fanin 'fanin:--qos 1 --inflight 10' 'p2p:--pairs 1000 --qos 1 --rate 10000'
#
# Each scenario runs RUNS times (default 1). The brokers take turns going first: scenario N,
# round R starts with the (N + R)th broker of the list and goes round it. Every run gets a
# freshly started broker process, stopped after it (memory and pools start from nothing);
# KEEP_BROKERS=1 starts each broker once for the whole invocation instead (steady-state runs,
# e.g. connecting again to a pool grown by the previous scenario). Figures are only divided
# between runs that did the same work: the same clients connected and, for message figures,
# the same share delivered (the table's notes say why not).
#
# Environment: BIN_DIR (default target/release; SKIP_BUILD=1 uses it as is), BROKERS (which,
# in column order; default "starling mosquitto rumqttd"; ratios are the first's), RUMQTTD
# (its binary; default target/bench-tools/bin/rumqttd from scripts/setup-bench.sh, else on
# PATH), RUMQTTD_CONF (default scripts/rumqttd.toml; its listen addresses are rewritten; a
# spec with `--protocol 5` uses its MQTT 5 listener), MOSQUITTO_CONF_EXTRA (lines appended
# to Mosquitto's config, e.g. "max_queued_messages 0"), STARLING_ARGS (extra broker flags),
# RESULTS_DIR (JSON reports; default a temp dir), RUNS, KEEP_BROKERS, FLOOR=1 (also run conn
# and churn scenarios against starling-floor, the least any MQTT server must do per
# connection, and add its column: the machine's ceiling in this run).
# Variants: a broker named KIND_VARIANT in BROKERS (e.g. starling_acl, mosquitto_pw; letters,
# digits and _) is KIND started with STARLING_ARGS_VARIANT added to STARLING_ARGS, or
# MOSQUITTO_CONF_EXTRA_VARIANT appended after MOSQUITTO_CONF_EXTRA (so it can override the
# defaults above, e.g. "allow_anonymous false"); several variants of one kind alternate
# like different brokers. Only the PIDs this script started are stopped.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${BIN_DIR:-$root/target/release}"
if [[ $# -eq 0 ]]; then
    sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
read -r -a brokers <<<"${BROKERS:-starling mosquitto rumqttd}"
runs="${RUNS:-1}"
keep="${KEEP_BROKERS:-0}"
# What a broker name runs: its KIND (before the first _) and VARIANT (after it, or empty).
kind_of() { echo "${1%%_*}"; }
variant_of() {
    if [[ "$1" == *_* ]]; then
        echo "${1#*_}"
    fi
}
for b in "${brokers[@]}"; do
    [[ "$b" =~ ^[A-Za-z0-9_]+$ ]] || {
        echo "broker name '$b' in BROKERS: letters, digits and _ only" >&2
        exit 2
    }
    case "$(kind_of "$b")" in
    starling) ;;
    mosquitto)
        command -v mosquitto >/dev/null || {
            echo "mosquitto is not installed (scripts/setup-bench.sh, or apt-get install mosquitto)" >&2
            exit 2
        }
        ;;
    rumqttd)
        rumqttd="${RUMQTTD:-$root/target/bench-tools/bin/rumqttd}"
        [[ -x "$rumqttd" ]] || rumqttd="$(command -v rumqttd || true)"
        [[ -x "$rumqttd" ]] || {
            echo "rumqttd is not installed: run scripts/setup-bench.sh, set RUMQTTD, or leave it out of BROKERS" >&2
            exit 2
        }
        ;;
    *)
        echo "unknown broker '$b' in BROKERS (starling, mosquitto, rumqttd)" >&2
        exit 2
        ;;
    esac
done
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$root" && cargo build --release -p starling -p starling-loadtest)
fi

# Every broker may open as many files as this shell may (rumqttd does not raise its own
# limit, Starling does).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
results_given="${RESULTS_DIR:-}"
if [[ -n "$results_given" && -e "$results_given/brokers" ]]; then
    echo "RESULTS_DIR=$results_given holds an earlier invocation's results: give a new directory" >&2
    exit 2
fi
work="$(mktemp -d)"
results="${results_given:-$work/results}"
mkdir -p "$results"
pids=()
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
trap cleanup EXIT

# Where each running broker listens (v5: rumqttd's MQTT 5 listener) and its PID.
declare -A port v5_port pid

start_broker() {
    local name=$1 p p5="" variant extra
    p="$(free_port)"
    variant="$(variant_of "$name")"
    case "$(kind_of "$name")" in
    starling)
        extra="STARLING_ARGS_$variant"
        # shellcheck disable=SC2086 # STARLING_ARGS are lists of flags
        "$bin_dir/starling" --listen "127.0.0.1:$p" ${STARLING_ARGS:-} ${variant:+${!extra:-}} \
            >>"$work/$name.log" 2>&1 &
        ;;
    mosquitto)
        extra="MOSQUITTO_CONF_EXTRA_$variant"
        {
            echo "listener $p 127.0.0.1"
            echo "persistence false"
            echo "max_connections -1"
            echo "allow_anonymous true"
            echo "log_dest none"
            printf '%s\n' "${MOSQUITTO_CONF_EXTRA:-}"
            [[ -z "$variant" ]] || printf '%s\n' "${!extra:-}"
        } >"$work/$name.conf"
        mosquitto -c "$work/$name.conf" >>"$work/$name.log" 2>&1 &
        ;;
    rumqttd)
        p5="$(free_port)"
        # The first `listen` is the MQTT 3.1.1 listener, the second the MQTT 5 one.
        awk -v v4="127.0.0.1:$p" -v v5="127.0.0.1:$p5" \
            '/^[[:space:]]*listen[[:space:]]*=/ { n++; sub(/=.*/, "= \"" (n == 1 ? v4 : v5) "\"") } { print }' \
            "${RUMQTTD_CONF:-$root/scripts/rumqttd.toml}" >"$work/rumqttd.toml"
        "$rumqttd" -q -c "$work/rumqttd.toml" >>"$work/rumqttd.log" 2>&1 &
        ;;
    floor)
        "$bin_dir/starling-floor" --listen "127.0.0.1:$p" >>"$work/floor.log" 2>&1 &
        ;;
    esac
    pid[$name]=$!
    pids+=("$!")
    port[$name]=$p
    v5_port[$name]=${p5:-$p}
    wait_port "$p"
    [[ -z "$p5" ]] || wait_port "$p5"
}

stop_broker() {
    stop_pid "${pid[$1]}"
}

run_one() {
    local broker=$1 name=$2 flags=$3 out=$4 target_port
    [[ "$keep" == 1 || "$broker" == floor ]] || start_broker "$broker"
    target_port=${port[$broker]}
    case " $flags " in
    *" --protocol 5 "* | *" --protocol=5 "*) target_port=${v5_port[$broker]} ;;
    esac
    # shellcheck disable=SC2086 # flags is a list of harness flags
    "$bin_dir/starling-loadtest" "$name" --target "127.0.0.1:$target_port" \
        --broker-pid "${pid[$broker]}" --label "$broker" --json $flags >"$out" 2>"$out.log" || {
        echo "$broker $name failed:" >&2
        tail -3 "$out.log" >&2
    }
    [[ "$keep" == 1 || "$broker" == floor ]] || stop_broker "$broker"
}

if [[ "$keep" == 1 ]]; then
    for b in "${brokers[@]}"; do
        start_broker "$b"
    done
fi
[[ "${FLOOR:-0}" != 1 ]] || start_broker floor
printf '%s\n' "${brokers[*]}" >"$results/brokers"

n=0
for spec in "$@"; do
    split_spec "$spec"
    n=$((n + 1))
    echo "$spec" >"$results/$n.spec"
    for round in $(seq "$runs"); do
        first=$(((n + round) % ${#brokers[@]}))
        for i in $(seq 0 $((${#brokers[@]} - 1))); do
            b=${brokers[$(((first + i) % ${#brokers[@]}))]}
            echo "== $spec: round $round, $b" >&2
            run_one "$b" "$name" "$flags" "$results/$n-$round-$b.json"
        done
        if [[ "${FLOOR:-0}" == 1 && ("$name" == conn || "$name" == churn) ]]; then
            run_one floor "$name" "$flags" "$results/$n-$round-floor.json"
        fi
    done
done

python3 "$root/scripts/compare_report.py" "$results"
