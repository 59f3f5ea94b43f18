"""Checks of the harness itself: the Remaining Length codec and the broker fixture."""

import pytest

from helpers import assert_healthy
from mqtt_packets import RawClient, decode_remaining_length, encode_remaining_length


@pytest.mark.parametrize(
    "value,size",
    [(0, 1), (127, 1), (128, 2), (16_383, 2), (16_384, 3), (2_097_151, 3), (2_097_152, 4), (268_435_455, 4)],
)
def test_remaining_length_boundaries_section_2_2_3(value, size):
    """The boundary values of the Remaining Length table in 2.2.3 round-trip in the right size."""
    encoded = encode_remaining_length(value)
    assert len(encoded) == size
    assert decode_remaining_length(encoded) == (value, size)


def test_remaining_length_rejects_five_bytes():
    with pytest.raises(ValueError):
        decode_remaining_length(b"\xff\xff\xff\xff\x7f")
    with pytest.raises(ValueError):
        encode_remaining_length(268_435_456)


def test_broker_fixture_port_pid_log_and_restart(broker):
    assert broker.port != 1883
    assert broker.host == "127.0.0.1"
    first_pid = broker.pid
    assert_healthy(broker)
    assert "=== start" in broker.log()
    broker.restart()
    assert broker.pid != first_pid and broker.alive()
    with RawClient(broker.host, broker.port) as c:
        c.connect("after-restart")
    assert_healthy(broker)
