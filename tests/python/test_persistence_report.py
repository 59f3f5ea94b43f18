"""scripts/persistence_report.py, the summary of scripts/bench-persistence.sh: the fan-in to
a persistent subscriber (with Starling's commits from /metrics), bytes on disk per stored
message, restart and RSS tables, each figure the median [min–max] over the rounds and
Starling's ratio to Mosquitto the median of the same-round ratios. No broker needed: each
test writes the files bench-persistence.sh writes into a results directory."""

import importlib.util
import json

from conftest import REPO_ROOT

_spec = importlib.util.spec_from_file_location(
    "persistence_report", REPO_ROOT / "scripts" / "persistence_report.py"
)
persistence_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(persistence_report)


def write(root, name, content):
    """A results file: `.kv` from a dict as key=value lines, `.json` as JSON, else as is."""
    if name.endswith(".kv"):
        content = "".join(f"{k}={v}\n" for k, v in content.items())
    elif not isinstance(content, str):
        content = json.dumps(content)
    (root / name).write_text(content)


def fanin_report(delivered_per_sec, unique=1000, published=1000, offline=None, cpu=0.01):
    messages = {
        "published": published,
        "delivered_per_sec": delivered_per_sec,
        "deliver_secs": unique / delivered_per_sec,
        "delivered_percent": 100.0,
        "tally": {"unique": unique},
        "latency": {"p50_ms": 2.0, "p99_ms": 8.0},
    }
    if offline:
        messages["offline"] = offline
    return {"messages": messages, "broker": {"cpu_secs_messages": cpu}}


def summary(root, capsys):
    assert persistence_report.main(["persistence_report.py", str(root)]) == 0
    return capsys.readouterr().out


def row(text, label):
    """The cells of the table row starting with `label`."""
    for line in text.splitlines():
        if line.startswith(f"| {label} |"):
            return [c.strip() for c in line.strip("|").split("|")]
    raise AssertionError(f"no row {label!r} in:\n{text}")


def test_fanin_medians_ratios_and_commits(tmp_path, capsys):
    for rnd, (sync, mosq) in enumerate([(20000, 40000), (30000, 50000), (10000, 40000)], start=1):
        write(tmp_path, f"fanin-online-{rnd}-starling_sync.json", fanin_report(sync))
        write(tmp_path, f"fanin-online-{rnd}-mosquitto.json", fanin_report(mosq))
        # 100 commits in the run's 1000 / sync seconds.
        write(tmp_path, f"fanin-online-{rnd}-starling_sync.metrics", "# HELP x\nstarling_store_commits_total 100\n")
    text = summary(tmp_path, capsys)
    sync = row(text, "Starling `sync`")
    assert sync[1] == "20 000 [10 000–30 000]"
    # Same-round ratios 0.5, 0.6, 0.25: their median.
    assert sync[2] == "0.50"
    assert sync[3] == "2.0 / 8.0"
    # 10 ms of CPU for 1000 messages.
    assert sync[4] == "10.0"
    assert sync[5] == "2 000 [1 000–3 000]"
    assert sync[6] == "10"
    mosq = row(text, "Mosquitto (`persistence true`)")
    assert mosq[2] == "" and mosq[5] == "-"


def test_offline_fanin_reads_the_time_away(tmp_path, capsys):
    away = {"acknowledged": 1000, "acknowledged_secs": 0.5, "acknowledged_per_sec": 2000.0, "broker_cpu_secs": 0.02, "resumed": 1, "queued": 1000}
    write(tmp_path, "fanin-offline-1-starling_sync.json", fanin_report(50000, offline=away))
    write(tmp_path, "fanin-offline-1-starling_sync.metrics", "starling_store_commits_total 50\n")
    mosq = dict(away, acknowledged_per_sec=4000.0, acknowledged_secs=0.25)
    write(tmp_path, "fanin-offline-1-mosquitto.json", fanin_report(80000, offline=mosq))
    sync = row(summary(tmp_path, capsys), "Starling `sync`")
    # Away: 2 000 msg/s, half Mosquitto's, 20 µs of CPU each; back: 50 000 against 80 000.
    assert sync[1:8] == ["2 000", "0.50", "20.0", "50 000", "0.62", "50", "100.0"]


def test_disk_subtracts_the_empty_store_and_divides_by_entries(tmp_path, capsys):
    for broker, empty, stopped, allocated in [("starling_sync", 1000, 41000, 21000), ("mosquitto", 50, 10050, 10050)]:
        write(tmp_path, f"disk-empty-1-{broker}.kv", {"file_bytes": empty, "alloc_bytes": empty})
        report = fanin_report(1000, unique=0, published=100, offline={"queued": 100})
        write(tmp_path, f"disk-d64-1-{broker}.json", report)
        kv = {"live_file_bytes": stopped, "stop_ms": 5, "file_bytes": stopped, "alloc_bytes": allocated}
        write(tmp_path, f"disk-d64-1-{broker}.kv", kv)
    text = summary(tmp_path, capsys)
    cells = row(text, "64 B payloads, all to one session")
    # A sparse file: 400 B per entry by its size, 200 B allocated; Mosquitto 100 B.
    assert cells[1:] == ["100 (100)", "400.0", "200.0", "100.0", "2.00"]
    assert "file was the same size while running" in text


def test_restart_and_rss_tables(tmp_path, capsys):
    write(tmp_path, "restart-gen-fill.json", {"retained": 1000, "sessions": 10, "queued": 100, "payload_bytes": 64})
    write(tmp_path, "restart-gen-1-starling_sync.kv", {"rss_kib": 2048, "hwm_kib": 4096, "recovery_ms": 1500, "stop_ms": 20, "file_bytes": 1048576})
    write(tmp_path, "restart-gen-1-starling_sync.ready.json", {"port_ms": 100.0, "connack_ms": 2500.0})
    write(tmp_path, "restart-gen-verify-session.json", {"session_present": True, "received": 10, "in_order": True})
    write(tmp_path, "restart-gen-verify-retained.json", {"retained": True, "payload_prefix": "r500"})
    for broker, connack in [("starling_sync", 1000.0), ("mosquitto", 4000.0)]:
        write(tmp_path, f"restart-mqtt-1-{broker}.kv", {"rss_kib": 1024, "stop_ms": 100})
        write(tmp_path, f"restart-mqtt-1-{broker}.ready.json", {"port_ms": 10.0, "connack_ms": connack})
        write(tmp_path, f"rss-1-{broker}.kv", {"idle_kib": 1024, "queued_kib": 1024 + 100, "restarted_kib": 2048, "stop_ms": 10})
        write(tmp_path, f"rss-1-{broker}.json", fanin_report(1, unique=0, published=10, offline={"queued": 1024, "acknowledged_per_sec": 5.0}))
    text = summary(tmp_path, capsys)
    assert "1 000 retained, 10 sessions × 10 queued (100 messages" in text
    assert row(text, "process start → first CONNACK, s")[1] == "2.50"
    assert "session present True, 10 queued messages in order True" in text
    # The MQTT-filled restart: Starling 1 s, Mosquitto 4 s.
    mqtt = text.split("the same content put through MQTT")[1]
    assert row(mqtt, "process start → first CONNACK, s")[1:] == ["1.00", "4.00", "0.25"]
    # 100 KiB over 1024 queued messages: 100 B each.
    rss = text.split("### RSS with 1 024 messages")[1]
    assert row(rss, "  per queued message (over idle), B")[1:] == ["100", "100", "1.00"]


def test_an_empty_results_directory_gives_the_header_only(tmp_path, capsys):
    write(tmp_path, "machine.kv", {"date": "2026-12-03", "runs": 3, "mosquitto": "2.0.11"})
    text = summary(tmp_path, capsys)
    assert text.startswith("# Persistence: Starling against Mosquitto 2.0.11, 3 rounds")
    assert "|" not in text
