"""scripts/compare_report.py, the table of scripts/compare.sh: message figures are divided only
between runs that delivered the same share, and a missing ratio says why. No broker needed:
each test writes harness reports (the JSON shape `starling-loadtest --json` prints) into a
results directory laid out as compare.sh lays it out."""

import importlib.util
import json

from conftest import REPO_ROOT

_spec = importlib.util.spec_from_file_location("compare_report", REPO_ROOT / "scripts" / "compare_report.py")
compare_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare_report)


def harness_report(rate, expected, unique, ended, connects_per_sec=1000.0, deadline_secs=120, connected=10):
    """A tcp run's report: `connected` of 10 clients connected, `unique` of `expected`
    deliveries arrived, and its drain ended `ended`."""
    missing = expected - unique
    return {
        "connects": {
            "attempted": 10,
            "connected": connected,
            "per_sec": connects_per_sec,
            "connack_latency": {"p50_ms": 0.2, "p99_ms": 1.0},
        },
        "messages": {
            "qos": 0,
            "delivered_per_sec": rate,
            "expected": expected,
            "delivered_percent": 100.0 * unique / expected,
            "tally": {"delivered": unique, "unique": unique, "duplicates": 0, "missing": missing},
            "drain": {"ended": ended, "secs": 1.0, "quiet_ms": 2000, "deadline_secs": deadline_secs},
            "dropped": missing if ended == "quiet" else 0,
            "undelivered": missing if ended == "deadline" else 0,
            "latency": {"p50_ms": 1.0, "p99_ms": 4.0},
        },
    }


def table(tmp_path, runs, brokers=("starling", "mosquitto", "rumqttd"), spec="fanin"):
    """Writes `runs` (one {broker: report} per round of one scenario) and renders the table."""
    (tmp_path / "brokers").write_text(" ".join(brokers) + "\n")
    (tmp_path / "1.spec").write_text(spec + "\n")
    for round_no, reports in enumerate(runs, 1):
        for broker, report in reports.items():
            (tmp_path / f"1-{round_no}-{broker}.json").write_text(json.dumps(report))
    return compare_report.Table(str(tmp_path)).render()


def starling_and_mosquitto(tmp_path, starling, mosquitto):
    """The table of one round of one scenario against Starling and Mosquitto."""
    return table(tmp_path, [{"starling": starling, "mosquitto": mosquitto}], brokers=("starling", "mosquitto"))


def row(text, metric):
    """The cells of the row for `metric`."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 1 and cells[1] == metric:
            return cells[2:]
    raise AssertionError(f"no row {metric!r} in:\n{text}")


def test_runs_that_delivered_everything_are_divided(tmp_path):
    out = table(
        tmp_path,
        [
            {
                "starling": harness_report(900_000, 1000, 1000, "complete"),
                "mosquitto": harness_report(150_000, 1000, 1000, "complete"),
                "rumqttd": harness_report(300_000, 1000, 1000, "complete"),
            }
        ],
    )
    assert row(out, "delivered msg/s") == ["900,000", "150,000", "300,000", "6.00", "3.00"]
    assert row(out, "e2e p99 ms")[3:] == ["1.00", "1.00"]
    assert "no ratio" not in out


def test_a_run_cut_by_the_deadline_gets_no_ratio_and_a_note_that_says_why(tmp_path):
    out = table(
        tmp_path,
        [
            {
                "starling": harness_report(900_000, 1000, 1000, "complete"),
                "mosquitto": harness_report(170_000, 1000, 400, "deadline", deadline_secs=10),
                "rumqttd": harness_report(300_000, 1000, 1000, "complete"),
            }
        ],
    )
    cells = row(out, "delivered msg/s")
    assert cells[3] == "no ratio [1]" and cells[4] == "3.00"
    assert row(out, "missing: not delivered by the deadline")[:3] == ["0", "600", "0"]
    assert row(out, "missing: dropped")[:3] == ["0", "0", "0"]
    assert row(out, "drain ended")[:3] == ["complete", "deadline", "complete"]
    note = out.split("[1] ", 1)[1]
    assert "Starling delivered 100.0 %" in note
    assert "Mosquitto delivered 40.0 % (600 not delivered by the 10 s deadline)" in note
    # Connect figures do not depend on what was delivered: still divided.
    assert row(out, "connects/s")[3] == "1.00"


def test_dropped_messages_are_named_as_such(tmp_path):
    out = starling_and_mosquitto(
        tmp_path,
        harness_report(1_000_000, 1000, 930, "quiet"),
        harness_report(170_000, 1000, 1000, "complete"),
    )
    assert row(out, "delivered msg/s")[2] == "no ratio [1]"
    assert row(out, "missing: dropped")[:2] == ["70", "0"]
    assert "Starling delivered 93.0 % (70 dropped), Mosquitto delivered 100.0 %" in out


def test_the_same_share_delivered_is_divided(tmp_path):
    # Both lost the same share (to within the tolerance): their rates compare.
    out = starling_and_mosquitto(
        tmp_path,
        harness_report(800_000, 100_000, 90_000, "quiet"),
        harness_report(200_000, 100_000, 89_950, "quiet"),
    )
    assert row(out, "delivered msg/s")[2] == "4.00"


def test_several_rounds_give_median_spread_and_the_ratio_of_comparable_rounds(tmp_path):
    rounds = [
        {
            "starling": harness_report(rate, 1000, 1000, "complete"),
            "mosquitto": harness_report(100_000, 1000, peer_unique, "complete" if peer_unique == 1000 else "quiet"),
        }
        for rate, peer_unique in [(300_000, 1000), (500_000, 1000), (400_000, 500)]
    ]
    out = table(tmp_path, rounds, brokers=("starling", "mosquitto"))
    cells = row(out, "delivered msg/s")
    assert cells[0] == "400,000 [300,000–500,000]"
    # Rounds 1 and 2 compare (3.00 and 5.00); round 3 does not.
    assert cells[2] == "4.00 (2 of 3 runs)"
    assert row(out, "drain ended")[1] == "complete/quiet"


def test_runs_that_connected_different_numbers_of_clients_are_not_divided(tmp_path):
    out = starling_and_mosquitto(
        tmp_path,
        harness_report(900_000, 1000, 1000, "complete", connects_per_sec=5000.0),
        harness_report(300_000, 1000, 1000, "complete", connects_per_sec=4000.0, connected=7),
    )
    assert row(out, "connects/s")[2] == "no ratio [1]"
    assert row(out, "delivered msg/s")[2] == "no ratio [1]"
    assert "Starling connected 10 of 10, Mosquitto connected 7 of 10" in out
