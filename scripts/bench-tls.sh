#!/usr/bin/env bash
# TLS against plain TCP, Starling against Mosquitto, in one run (docs/benchmarks.md, "TLS").
# Makes a CA and a server certificate at run time (ECDSA P-256, `openssl`; the keys live in
# a temp dir that goes at the end), starts each broker with a TLS listener and a plain TCP
# listener on free loopback ports, a fresh broker process per run, and runs, per broker and
# interleaved across RUNS (the brokers take turns going first, as in compare.sh):
#
#   tls-full      churn --clients CLIENTS --cycles 2 over TLS, resumption off: every connect
#                 a full handshake (cycle 2: the broker's pools are warm)
#   tls-resumed   the same with --tls-resume: cycle 1 collects the sessions (TLS 1.3
#                 tickets, or TLS 1.2 session ids), cycle 2 resumes them
#   tls-full-one  churn --clients SERIAL_CLIENTS --cycles 2 --connect-concurrency 1: one
#   tls-resumed-one  connect at a time, full and resumed: the latency of a handshake on an
#                 idle broker, without the queueing of 100 in flight
#   tcp-connect   the same churn over plain TCP, for reference
#   tls-memory    conn --clients MEM_CLIENTS --hold-secs 2 over TLS: broker RSS per
#   tcp-memory    connection (idle, not subscribed), and the same over TCP
#   tls-fanin     QoS 0 fan-in, 100 publishers x FANIN_MESSAGES -> 1 subscriber, over TLS
#   tcp-fanin     and over TCP (a fixed amount of work, published as fast as it goes)
#   tls-fanout    QoS 0 fan-out, 1 publisher x FANOUT_MESSAGES -> 100 subscribers, over TLS
#   tcp-fanout    and over TCP
#
# The clients are the harness's (rustls on ring; `starling-loadtest --help`, "TLS"). Both
# brokers get the same certificate and the same clients, and the report says which version,
# suite and key exchange each negotiated. Mosquitto's listener: certfile, keyfile, cafile
# (run as the invoking user, `user`, so that it can read the key); Starling's:
# [[listeners]] protocol = "tls" with cert_file and key_file.
#
# Environment: RUNS (3), BROKERS ("starling mosquitto"; ratios are the first's to the
# second's; BROKERS=mosquitto runs Mosquitto alone), CLIENTS (2000), SERIAL_CLIENTS (200),
# MEM_CLIENTS (5000),
# FANIN_MESSAGES (per publisher, 5000), FANOUT_MESSAGES (5000), PAYLOAD_BYTES (64),
# TLS_VERSION (1.2 or 1.3; default both offered), TLS_CIPHER (rustls suite names, comma-
# separated; default every suite of the ring provider, the servers choose), DRAIN_SECS (the
# message runs' drain deadline, 60), RUN_TIMEOUT_SECS (each harness run is killed after this,
# 300), STARLING_ARGS (extra broker flags), MOSQUITTO_CONF_EXTRA (extra lines for Mosquitto's
# config, before the listeners), SKIP_BUILD=1 and BIN_DIR (as compare.sh), RESULTS_DIR (a new
# directory; default target/bench-tls/DATE-TIME). RESULTS_DIR/summary.md has the summary and
# every figure (scripts/tls_report.py); the harness's JSON reports are beside it, laid out as
# compare.sh lays them out. Loopback only; every process this script starts is stopped by
# PID.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$root/scripts/lib.sh"
bin_dir="${BIN_DIR:-$root/target/release}"
runs="${RUNS:-3}"
read -r -a brokers <<<"${BROKERS:-starling mosquitto}"
clients="${CLIENTS:-2000}"
serial_clients="${SERIAL_CLIENTS:-200}"
mem_clients="${MEM_CLIENTS:-5000}"
fanin_messages="${FANIN_MESSAGES:-5000}"
fanout_messages="${FANOUT_MESSAGES:-5000}"
payload="${PAYLOAD_BYTES:-64}"
drain_secs="${DRAIN_SECS:-60}"
run_timeout="${RUN_TIMEOUT_SECS:-300}"
# Client sockets spread over these source addresses, so ephemeral ports never run out.
sources="127.0.0.1-127.0.0.8"
if [[ $# -gt 0 ]]; then
    sed -n '2,41p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
for b in "${brokers[@]}"; do
    case "$b" in
    starling | mosquitto) ;;
    *)
        echo "unknown broker '$b' in BROKERS (starling, mosquitto)" >&2
        exit 2
        ;;
    esac
done
require_tools "apt-get install openssl mosquitto coreutils python3" openssl mosquitto timeout python3
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    (cd "$root" && cargo build --release -p starling -p starling-loadtest)
fi
new_results_dir "$root" bench-tls
# Every broker may open as many files as this shell may (MEM_CLIENTS connections).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
work="$(mktemp -d)"
pids=()
trap cleanup EXIT
started=$SECONDS

# The CA and the server certificate (CN localhost; SAN localhost and 127.0.0.1, the name
# the harness checks by default), ECDSA P-256 keys, SHA-256 signatures, valid 2 days.
certs="$work/certs"
make_certs() {
    mkdir -p "$certs"
    (
        cd "$certs"
        openssl ecparam -name prime256v1 -genkey -noout -out ca.key
        openssl req -x509 -new -key ca.key -sha256 -days 2 -subj "/CN=Starling bench CA" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.crt
        openssl ecparam -name prime256v1 -genkey -noout -out server.key
        openssl req -new -key server.key -subj "/CN=localhost" -out server.csr
        printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" \
            "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" \
            >server.ext
        openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
            -sha256 -extfile server.ext -out server.crt
    ) >"$work/openssl.log" 2>&1 || {
        cat "$work/openssl.log" >&2
        exit 1
    }
}
make_certs

# The harness's TLS flags.
tls_flags="--tls-ca $certs/ca.crt"
[[ -z "${TLS_VERSION:-}" ]] || tls_flags+=" --tls-version $TLS_VERSION"
[[ -z "${TLS_CIPHER:-}" ]] || tls_flags+=" --tls-cipher $TLS_CIPHER"

# Where the running broker listens, and its PID.
tls_port="" tcp_port="" broker_pid=""

start_broker() {
    local name=$1
    tls_port="$(free_port)"
    tcp_port="$(free_port)"
    while [[ "$tcp_port" == "$tls_port" ]]; do tcp_port="$(free_port)"; done
    case "$name" in
    starling)
        cat >"$work/starling.toml" <<EOF
[[listeners]]
bind = "127.0.0.1:$tls_port"
protocol = "tls"
cert_file = "$certs/server.crt"
key_file = "$certs/server.key"

[[listeners]]
bind = "127.0.0.1:$tcp_port"
protocol = "tcp"
EOF
        # shellcheck disable=SC2086 # STARLING_ARGS is a list of flags
        "$bin_dir/starling" --config "$work/starling.toml" --metrics-listen off \
            ${STARLING_ARGS:-} >>"$work/starling.log" 2>&1 &
        ;;
    mosquitto)
        {
            echo "user $(id -un)"
            echo "persistence false"
            echo "max_connections -1"
            echo "allow_anonymous true"
            echo "log_dest none"
            printf '%s\n' "${MOSQUITTO_CONF_EXTRA:-}"
            echo "listener $tls_port 127.0.0.1"
            echo "certfile $certs/server.crt"
            echo "keyfile $certs/server.key"
            echo "cafile $certs/ca.crt"
            echo "listener $tcp_port 127.0.0.1"
        } >"$work/mosquitto.conf"
        mosquitto -c "$work/mosquitto.conf" >>"$work/mosquitto.log" 2>&1 &
        ;;
    esac
    broker_pid=$!
    pids+=("$broker_pid")
    if ! wait_port "$tls_port" || ! wait_port "$tcp_port"; then
        echo "$name did not start; its log:" >&2
        tail -5 "$work/$name.log" >&2
        exit 1
    fi
}

# The specs: KEY|TRANSPORT|SCENARIO FLAGS. KEY names the row in tls_report.py.
messages="--duration-secs 120 --drain-deadline-secs $drain_secs --payload-bytes $payload"
specs=(
    "tls-full|tls|churn --clients $clients --cycles 2"
    "tls-resumed|tls|churn --clients $clients --cycles 2 --tls-resume"
    "tls-full-one|tls|churn --clients $serial_clients --cycles 2 --connect-concurrency 1"
    "tls-resumed-one|tls|churn --clients $serial_clients --cycles 2 --connect-concurrency 1 --tls-resume"
    "tcp-connect|tcp|churn --clients $clients --cycles 2"
    "tls-memory|tls|conn --clients $mem_clients --hold-secs 2"
    "tcp-memory|tcp|conn --clients $mem_clients --hold-secs 2"
    "tls-fanin|tls|fanin --publishers 100 --messages $fanin_messages $messages"
    "tcp-fanin|tcp|fanin --publishers 100 --messages $fanin_messages $messages"
    "tls-fanout|tls|fanout --subscribers 100 --messages $fanout_messages $messages"
    "tcp-fanout|tcp|fanout --subscribers 100 --messages $fanout_messages $messages"
)

run_one() {
    local broker=$1 transport=$2 flags=$3 out=$4 port extra=""
    start_broker "$broker"
    port=$tcp_port
    if [[ "$transport" == tls ]]; then
        port=$tls_port
        extra=$tls_flags
    fi
    # shellcheck disable=SC2086 # flags are lists of harness flags
    timeout --signal=KILL "$run_timeout" "$bin_dir/starling-loadtest" $flags $extra \
        --target "127.0.0.1:$port" --source-addrs "$sources" --broker-pid "$broker_pid" \
        --label "$broker" --json >"$out" 2>"$out.log" || {
        echo "$broker: failed (exit $?):" >&2
        tail -3 "$out.log" >&2
    }
    stop_pid "$broker_pid"
}

printf '%s\n' "${brokers[*]}" >"$results/brokers"
n=0
for spec in "${specs[@]}"; do
    n=$((n + 1))
    IFS='|' read -r key transport flags <<<"$spec"
    echo "$key" >"$results/$n.run"
    echo "$key" >"$results/$n.spec"
done
for round in $(seq "$runs"); do
    n=0
    for spec in "${specs[@]}"; do
        n=$((n + 1))
        IFS='|' read -r key transport flags <<<"$spec"
        first=$(((n + round) % ${#brokers[@]}))
        for i in $(seq 0 $((${#brokers[@]} - 1))); do
            b=${brokers[$(((first + i) % ${#brokers[@]}))]}
            echo "== round $round/$runs, $key, $b ($((SECONDS - started)) s)" >&2
            run_one "$b" "$transport" "$flags" "$results/$n-$round-$b.json"
        done
    done
done

offered_versions="${TLS_VERSION:-1.2 and 1.3}"
offered_suites="${TLS_CIPHER:-every suite of the ring provider}"
{
    echo "# TLS and TCP: ${brokers[*]}, $runs rounds"
    echo
    echo "Certificate: ECDSA P-256 (prime256v1), SHA-256, from a CA of the same kind, made by"
    echo "openssl at the start of the run. Offered: TLS $offered_versions; $offered_suites."
    echo "Took $((SECONDS - started)) s. The runs (harness flags; TLS runs add \`$tls_flags\`"
    echo "with the CA's path, every run \`--source-addrs $sources --broker-pid PID\`):"
    echo
    for spec in "${specs[@]}"; do
        IFS='|' read -r key transport flags <<<"$spec"
        echo "- $key: \`$flags\` over $transport"
    done
    echo
    python3 "$root/scripts/tls_report.py" "$results"
} >"$results/summary.md"
cat "$results/summary.md"
echo "results: $results" >&2
