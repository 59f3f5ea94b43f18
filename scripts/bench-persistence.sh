#!/usr/bin/env bash
# Persistence, Starling against Mosquitto in one run (docs/benchmarks.md, "Persistence").
# Every broker is started by this script on free loopback ports, with a fresh store
# directory unless a part says otherwise, and stopped by its PID. Parts (PARTS, default all):
#
#   fanin    QoS 1 fan-in to one persistent subscriber (3.1.1, Clean Session 0, so every
#            message is stored): FANIN_PUBLISHERS publishers x FANIN_MESSAGES, --inflight
#            FANIN_INFLIGHT, PAYLOAD_BYTES each, published as fast as they are acknowledged.
#            "online": the subscriber is connected; "offline": it leaves before publishing
#            and resumes its session after every publish is acknowledged (messages only
#            queued while publishing); "clean": the same fan-in to a clean-session
#            subscriber (nothing of it is stored: what persistence costs QoS 1 traffic that
#            asked for none). Brokers: FANIN_BROKERS (default starling_off
#            starling_sync starling_async mosquitto; async flushes every 100 ms). Starling's
#            commits come from /metrics (starling_store_commits_total).
#   disk     Bytes on disk per stored message: messages queued for offline persistent
#            sessions, then the store file measured live (Starling) and after a clean stop
#            (both), against an empty store. Workloads: d64 and d1k (DISK_MESSAGES messages of
#            64 B / 1 KiB to one session), share1 (one message to DISK_SESSIONS sessions),
#            share100 (100 messages to DISK_SESSIONS sessions). starling_sync, mosquitto.
#   restart  Start-up with a large store: (gen) a store written by benches' persist_fill
#            through the broker's own encoders (RESTART_RETAINED retained messages,
#            RESTART_SESSIONS offline sessions x RESTART_QUEUED queued messages, each its own
#            body), Starling only, checked over MQTT (a session present with its messages in
#            order, a retained message) in round 1; (mqtt) the same kind of content put
#            through MQTT into each broker once (MQTT_RETAINED retained messages by the
#            harness's retained scenario, MQTT_SESSIONS sessions x MQTT_QUEUED messages by
#            fanout runs of at most 10 000 offline subscribers: each message's body shared by
#            the sessions of its run), then restarted every round. Measured: process start to
#            the first CONNACK (and to the port accepting), Starling's recovery_ms, RSS after
#            start, the clean stop before.
#   rss      RSS with RSS_SESSIONS offline sessions x RSS_MESSAGES queued messages of
#            PAYLOAD_BYTES (one publisher, fanout): idle, after publishing, after a clean stop
#            and restart. starling_sync, mosquitto.
#
# Mosquitto 2.0.11: `persistence true` with its default autosave (every 1 800 s and at a
# clean stop: its store is not durable per message), `max_queued_messages 0` everywhere (its
# default 1 000 drops the rest). Starling keeps its default queue limits in the online
# fan-in; everywhere else both brokers' queues are unbounded (Starling:
# --max-queued-messages 10000000 --max-queued-bytes 0).
#
# Environment: RUNS (3), PARTS ("fanin disk restart rss"), SKIP_BUILD=1 and BIN_DIR (as
# compare.sh), RESULTS_DIR (a new directory; default target/bench-persistence/DATE-TIME),
# the sizes above (FANIN_PUBLISHERS 100, FANIN_MESSAGES 1000, FANIN_INFLIGHT 10, PAYLOAD_BYTES
# 64, DISK_MESSAGES 100000, DISK_SESSIONS 1000, RESTART_RETAINED 1000000, RESTART_SESSIONS
# 100000, RESTART_QUEUED 10, MQTT_RETAINED 1000000, MQTT_SESSIONS 100000, MQTT_QUEUED 10,
# RSS_SESSIONS 100, RSS_MESSAGES 10000), DRAIN_SECS (60), RUN_TIMEOUT_SECS (each harness run
# is killed after this, 600), STARLING_ARGS, STARLING_BIN (the broker's binary, default
# BIN_DIR/starling: to measure a patched broker with this harness), MOSQUITTO_CONF_EXTRA.
# RESULTS_DIR/summary.md has the tables (scripts/persistence_report.py); every harness
# report (JSON), /metrics scrape and measurement (.kv) is beside it. Loopback only; every
# process this script starts is stopped by PID.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
bin_dir="${BIN_DIR:-$root/target/release}"
starling_bin="${STARLING_BIN:-$bin_dir/starling}"
runs="${RUNS:-3}"
read -r -a parts <<<"${PARTS:-fanin disk restart rss}"
read -r -a fanin_brokers <<<"${FANIN_BROKERS:-starling_off starling_sync starling_async mosquitto}"
fanin_publishers="${FANIN_PUBLISHERS:-100}"
fanin_messages="${FANIN_MESSAGES:-1000}"
fanin_inflight="${FANIN_INFLIGHT:-10}"
payload="${PAYLOAD_BYTES:-64}"
disk_messages="${DISK_MESSAGES:-100000}"
disk_sessions="${DISK_SESSIONS:-1000}"
restart_retained="${RESTART_RETAINED:-1000000}"
restart_sessions="${RESTART_SESSIONS:-100000}"
restart_queued="${RESTART_QUEUED:-10}"
mqtt_retained="${MQTT_RETAINED:-1000000}"
mqtt_sessions="${MQTT_SESSIONS:-100000}"
mqtt_queued="${MQTT_QUEUED:-10}"
rss_sessions="${RSS_SESSIONS:-100}"
rss_messages="${RSS_MESSAGES:-10000}"
drain_secs="${DRAIN_SECS:-60}"
run_timeout="${RUN_TIMEOUT_SECS:-600}"
sources="127.0.0.1-127.0.0.8"
# At most this many subscribers per harness run (the open-file limit, 20 000 here).
session_batch=10000
unbounded_queues="--max-queued-messages 10000000 --max-queued-bytes 0"
if [[ $# -gt 0 ]]; then
    sed -n '2,52p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
require_tools "apt-get install mosquitto coreutils python3 curl" mosquitto timeout python3 curl
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$root" && cargo build --release -p starling -p starling-loadtest &&
        cargo build --release -p starling-benches --bin persist_fill)
fi
new_results_dir "$root" bench-persistence
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
# The stores live beside the results (the same disk as a deployment's would be, not tmpfs).
work="$(mktemp -d "$results/work.XXXXXX")"
pids=()
trap cleanup EXIT
started=$SECONDS
probe=(python3 "$root/scripts/bench_probe.py")

log() { echo "== $* ($((SECONDS - started)) s)" >&2; }

# Appends `key=value` to FILE.
kv() { echo "$2=$3" >>"$1"; }

# The running broker: its port, its metrics port (Starling), PID, log, store file, and when
# it was started (epoch seconds, for the ready probe).
port="" mport="" broker_pid="" broker_log="" store_file="" started_at=""

# start_broker NAME DIR [unbounded]: starts NAME (starling_off, starling_sync,
# starling_async, mosquitto) with its store in DIR; "unbounded" lifts Starling's queue limits.
start_broker() {
    local name=$1 dir=$2 queues="" args
    [[ "${3:-}" == unbounded ]] && queues=$unbounded_queues
    port="$(free_port)"
    mport="$(free_port)"
    mkdir -p "$dir"
    broker_log="$dir/broker.log"
    case "$name" in
    starling_*)
        store_file="$dir/store/starling.redb"
        args="--persistence-mode ${name#starling_} --persistence-path $dir/store"
        [[ "$name" == starling_async ]] && args+=" --persistence-flush-interval-ms 100"
        started_at=$EPOCHREALTIME
        # shellcheck disable=SC2086 # lists of flags
        "$starling_bin" --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" \
            $args $queues ${STARLING_ARGS:-} >>"$broker_log" 2>&1 &
        ;;
    mosquitto)
        store_file="$dir/mosquitto.db"
        {
            echo "user $(id -un)"
            echo "persistence true"
            echo "persistence_location $dir/"
            echo "max_queued_messages 0"
            echo "max_connections -1"
            echo "allow_anonymous true"
            echo "log_dest stderr"
            echo "log_type error"
            echo "log_type warning"
            printf '%s\n' "${MOSQUITTO_CONF_EXTRA:-}"
            echo "listener $port 127.0.0.1"
        } >"$dir/mosquitto.conf"
        started_at=$EPOCHREALTIME
        mosquitto -c "$dir/mosquitto.conf" >>"$broker_log" 2>&1 &
        ;;
    *)
        echo "unknown broker $name" >&2
        exit 2
        ;;
    esac
    broker_pid=$!
    pids+=("$broker_pid")
}

# Waits until the broker answers CONNECT; with OUT, writes the probe's timings there.
await_ready() {
    local out=${1:-/dev/null}
    if ! "${probe[@]}" ready "$port" --since "$started_at" --timeout "$run_timeout" >"$out"; then
        echo "the broker did not answer on $port; its log:" >&2
        tail -5 "$broker_log" >&2
        exit 1
    fi
}

# fresh_broker NAME DIR: NAME on an empty store in DIR, unbounded queues, answering.
fresh_broker() {
    rm -rf "$2"
    start_broker "$1" "$2" unbounded
    await_ready
}

# Stops the broker (SIGTERM) and waits for it; `stop_ms` is how long that took.
stop_ms=0
stop_broker() {
    local t0=$EPOCHREALTIME
    stop_pid "$broker_pid"
    stop_ms=$(python3 -c "print(round(($EPOCHREALTIME - $t0) * 1000, 1))")
}

status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
file_bytes() { if [[ -f "$1" ]]; then stat -c %s "$1"; else echo 0; fi; }
alloc_bytes() { if [[ -f "$1" ]]; then echo $(($(stat -c '%b * %B' "$1"))); else echo 0; fi; }
recovery_ms() { grep -o 'recovery_ms=[0-9]*' "$broker_log" | tail -1 | cut -d= -f2; }
scrape() { if [[ "$1" == starling_* ]]; then curl -sf "127.0.0.1:$mport/metrics" >"$2" || true; fi; }

# harness OUT FLAGS...: the load harness against the running broker, JSON to OUT.
harness() {
    local out=$1
    shift
    timeout --signal=KILL "$run_timeout" "$bin_dir/starling-loadtest" "$@" \
        --target "127.0.0.1:$port" --source-addrs "$sources" --broker-pid "$broker_pid" \
        --json >"$out" 2>"$out.log" || {
        echo "harness failed (exit $?): $*" >&2
        tail -3 "$out.log" >&2
    }
}

# The brokers of LIST in the order of round R (they take turns going first).
rotated() {
    local round=$1 i n
    shift
    n=$#
    local list=("$@")
    for i in $(seq 0 $((n - 1))); do
        echo "${list[$(((round + i) % n))]}"
    done
}

persistent="--subscriber-session-expiry-secs 86400"

part_fanin() {
    local round spec b flags dir out
    local base="fanin --publishers $fanin_publishers --messages $fanin_messages --inflight $fanin_inflight --payload-bytes $payload --qos 1 --duration-secs 600 --drain-deadline-secs $drain_secs"
    for round in $(seq "$runs"); do
        for spec in online offline clean; do
            for b in $(rotated "$round" "${fanin_brokers[@]}"); do
                log "round $round/$runs: fanin $spec, $b"
                dir="$work/fanin-$b"
                rm -rf "$dir"
                out="$results/fanin-$spec-$round-$b"
                flags=$base
                case "$spec" in
                online)
                    start_broker "$b" "$dir"
                    flags+=" $persistent"
                    ;;
                offline)
                    start_broker "$b" "$dir" unbounded
                    flags+=" $persistent --subscribers-offline return"
                    ;;
                clean) start_broker "$b" "$dir" ;;
                esac
                await_ready
                # shellcheck disable=SC2086
                harness "$out.json" $flags --label "$b"
                scrape "$b" "$out.metrics"
                stop_broker
                rm -rf "$dir"
            done
        done
    done
}

# The harness flags of a disk workload.
disk_flags() {
    local away="--qos 1 $persistent --subscribers-offline stay --duration-secs 600 --drain-deadline-secs $drain_secs"
    case "$1" in
    d64) echo "fanin --publishers 10 --messages $((disk_messages / 10)) --payload-bytes 64 $away" ;;
    d1k) echo "fanin --publishers 10 --messages $((disk_messages / 10)) --payload-bytes 1024 $away" ;;
    share1) echo "fanout --subscribers $disk_sessions --messages 1 --payload-bytes 64 $away" ;;
    share100) echo "fanout --subscribers $disk_sessions --messages 100 --payload-bytes 64 $away" ;;
    esac
}

part_disk() {
    local round w b dir out
    for round in $(seq "$runs"); do
        for b in $(rotated "$round" starling_sync mosquitto); do
            log "round $round/$runs: disk, empty store, $b"
            dir="$work/disk-$b"
            fresh_broker "$b" "$dir"
            stop_broker
            out="$results/disk-empty-$round-$b.kv"
            kv "$out" file_bytes "$(file_bytes "$store_file")"
            kv "$out" alloc_bytes "$(alloc_bytes "$store_file")"
            rm -rf "$dir"
        done
        for w in d64 d1k share1 share100; do
            for b in $(rotated "$round" starling_sync mosquitto); do
                log "round $round/$runs: disk $w, $b"
                dir="$work/disk-$b"
                out="$results/disk-$w-$round-$b"
                fresh_broker "$b" "$dir"
                # shellcheck disable=SC2046
                harness "$out.json" $(disk_flags "$w") --label "$b"
                scrape "$b" "$out.metrics"
                kv "$out.kv" live_file_bytes "$(file_bytes "$store_file")"
                stop_broker
                kv "$out.kv" stop_ms "$stop_ms"
                kv "$out.kv" file_bytes "$(file_bytes "$store_file")"
                kv "$out.kv" alloc_bytes "$(alloc_bytes "$store_file")"
                rm -rf "$dir"
            done
        done
    done
}

# measure_start OUT BROKER DIR: starts BROKER on the store in DIR and measures its start
# (timings, recovery, RSS) into OUT.*, then leaves it running.
measure_start() {
    local out=$1 b=$2 dir=$3
    start_broker "$b" "$dir" unbounded
    await_ready "$out.ready.json"
    sleep 1
    kv "$out.kv" rss_kib "$(status_kib "$broker_pid" VmRSS)"
    kv "$out.kv" hwm_kib "$(status_kib "$broker_pid" VmHWM)"
    [[ "$b" == starling_* ]] && kv "$out.kv" recovery_ms "$(recovery_ms)"
    kv "$out.kv" file_bytes "$(file_bytes "$store_file")"
    scrape "$b" "$out.metrics"
}

part_restart() {
    local round b dir out batch n
    log "restart: writing the generated store"
    mkdir -p "$work/gen-pristine"
    "$bin_dir/persist_fill" --path "$work/gen-pristine/store" --retained "$restart_retained" \
        --sessions "$restart_sessions" --queued "$restart_queued" --payload-bytes "$payload" \
        >"$results/restart-gen-fill.json"
    for b in starling_sync mosquitto; do
        log "restart: filling $b through MQTT"
        dir="$work/mqtt-$b"
        fresh_broker "$b" "$dir"
        harness "$results/restart-mqtt-fill-retained-$b.json" retained --messages "$mqtt_retained" \
            --qos 0 --payload-bytes "$payload" --drain-secs "$drain_secs" --label "$b"
        n=0
        batch=0
        while ((n < mqtt_sessions)); do
            batch=$((batch + 1))
            local size=$((mqtt_sessions - n < session_batch ? mqtt_sessions - n : session_batch))
            # shellcheck disable=SC2086
            harness "$results/restart-mqtt-fill-sessions-$batch-$b.json" fanout \
                --subscribers "$size" --messages "$mqtt_queued" --payload-bytes "$payload" \
                --qos 1 $persistent --subscribers-offline stay --duration-secs 600 \
                --drain-deadline-secs "$drain_secs" --client-prefix "f$batch" --label "$b"
            n=$((n + size))
        done
        stop_broker
        kv "$results/restart-mqtt-fill-$b.kv" stop_ms "$stop_ms"
        kv "$results/restart-mqtt-fill-$b.kv" file_bytes "$(file_bytes "$store_file")"
    done
    for round in $(seq "$runs"); do
        log "round $round/$runs: restart gen, starling_sync"
        rm -rf "$work/gen"
        cp -r "$work/gen-pristine" "$work/gen"
        out="$results/restart-gen-$round-starling_sync"
        measure_start "$out" starling_sync "$work/gen"
        if [[ "$round" == 1 ]]; then
            local s=$((restart_sessions / 2)) r=$((restart_retained / 2))
            { "${probe[@]}" session "$port" "gen-s-$s" --count "$restart_queued" \
                --expect-prefix "s${s}m" || true; } >"$results/restart-gen-verify-session.json"
            { "${probe[@]}" retained "$port" "gen/r/$r" --expect-prefix "r$r." ||
                true; } >"$results/restart-gen-verify-retained.json"
        fi
        stop_broker
        kv "$out.kv" stop_ms "$stop_ms"
        for b in $(rotated "$round" starling_sync mosquitto); do
            log "round $round/$runs: restart mqtt, $b"
            out="$results/restart-mqtt-$round-$b"
            measure_start "$out" "$b" "$work/mqtt-$b"
            stop_broker
            kv "$out.kv" stop_ms "$stop_ms"
        done
    done
    rm -rf "$work/gen" "$work/gen-pristine" "$work"/mqtt-*
}

part_rss() {
    local round b dir out
    for round in $(seq "$runs"); do
        for b in $(rotated "$round" starling_sync mosquitto); do
            log "round $round/$runs: rss, $b"
            dir="$work/rss-$b"
            out="$results/rss-$round-$b"
            fresh_broker "$b" "$dir"
            sleep 0.5
            kv "$out.kv" idle_kib "$(status_kib "$broker_pid" VmRSS)"
            # shellcheck disable=SC2086
            harness "$out.json" fanout --subscribers "$rss_sessions" --messages "$rss_messages" \
                --payload-bytes "$payload" --qos 1 $persistent --subscribers-offline stay \
                --duration-secs 600 --drain-deadline-secs "$drain_secs" --label "$b"
            sleep 1
            kv "$out.kv" queued_kib "$(status_kib "$broker_pid" VmRSS)"
            kv "$out.kv" queued_hwm_kib "$(status_kib "$broker_pid" VmHWM)"
            scrape "$b" "$out.metrics"
            stop_broker
            kv "$out.kv" stop_ms "$stop_ms"
            kv "$out.kv" file_bytes "$(file_bytes "$store_file")"
            start_broker "$b" "$dir" unbounded
            await_ready "$out.ready.json"
            sleep 1
            kv "$out.kv" restarted_kib "$(status_kib "$broker_pid" VmRSS)"
            kv "$out.kv" restarted_hwm_kib "$(status_kib "$broker_pid" VmHWM)"
            [[ "$b" == starling_* ]] && kv "$out.kv" recovery_ms "$(recovery_ms)"
            stop_broker
            rm -rf "$dir"
        done
    done
}

{
    kv "$results/machine.kv" date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    kv "$results/machine.kv" commit "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    kv "$results/machine.kv" cpus "$(nproc)"
    kv "$results/machine.kv" mosquitto "$(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}')"
    kv "$results/machine.kv" load_before "$(cut -d' ' -f1-3 /proc/loadavg)"
    kv "$results/machine.kv" runs "$runs"
    kv "$results/machine.kv" parts "${parts[*]}"
}
"${probe[@]}" fsync "$work" >"$results/fsync.json"
for part in "${parts[@]}"; do
    case "$part" in
    fanin | disk | restart | rss) "part_$part" ;;
    *)
        echo "unknown part '$part' in PARTS (fanin disk restart rss)" >&2
        exit 2
        ;;
    esac
done
kv "$results/machine.kv" load_after "$(cut -d' ' -f1-3 /proc/loadavg)"
kv "$results/machine.kv" secs "$((SECONDS - started))"
python3 "$root/scripts/persistence_report.py" "$results" >"$results/summary.md"
cat "$results/summary.md"
echo "results: $results" >&2
