"""DNS rebinding: the pages answer only requests addressed to the sentry itself, whatever the
listener (loopback, one LAN address, or every address)."""

from __future__ import annotations

import pytest
from pages_helpers import page_config, page_server
from test_pages_server import get

from edge_sentry.pages.hosts import host_allowed

NAMES = ["sentry-north.local"]


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("192.168.1.20:8080", "192.168.1.20"),  # the address it was reached on, with or without port
        ("192.168.1.20", "192.168.1.20"),
        ("[fe80::1]:8080", "fe80::1%eth0"),
        ("192.168.1.20:8080", "::ffff:192.168.1.20"),  # an IPv4 client of a dual-stack socket
        ("localhost:8080", "127.0.0.1"),  # loopback names on a loopback connection
        ("127.0.0.1:8080", "127.0.0.1"),
        ("[::1]:8080", "::1"),
        ("sentry-north.local:8080", "192.168.1.20"),  # a name in display.hosts
        ("Sentry-North.LOCAL.", "192.168.1.20"),
    ],
)
def test_a_request_addressed_to_the_sentry_is_answered(host, local):
    assert host_allowed(host, local, NAMES)


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("attacker.example:8080", "192.168.1.20"),  # rebinding: the attacker's name for the sentry
        ("attacker.example", "127.0.0.1"),
        ("192.168.1.21:8080", "192.168.1.20"),  # another address
        ("localhost:8080", "192.168.1.20"),  # a loopback name over the network
        ("127.0.0.1:8080", "192.168.1.20"),
        ("sentry-north.local", None),
        ("", "192.168.1.20"),
        ("192.168.1.20:http", "192.168.1.20"),
        ("[fe80::1", "fe80::1"),
        ("192.168.1.20:8080", None),
    ],
)
def test_a_request_addressed_to_another_name_is_refused(host, local):
    assert not host_allowed(host, local, NAMES if local is not None else [])


def test_on_a_listener_of_every_address_a_rebound_name_is_refused_and_a_listed_one_answered(tmp_path):
    """`display.listen = "0.0.0.0:..."` (provisioning/README): the test reaches it on loopback only."""
    config = page_config(tmp_path, display={"listen": "0.0.0.0:0", "hosts": ["sentry-north.local"]})
    with page_server(config) as (server, _hub):
        assert server.address is not None
        port = server.address[1]
        at = ("127.0.0.1", port)
        for path in ("/staff/state", "/health", "/events", "/"):
            status, body = get(at, path, host=f"attacker.example:{port}")
            assert status == 403, path
            assert body == {"error": "this sentry's pages answer only to its own address or display.hosts"}
        assert get(at, "/staff/state", host=f"127.0.0.1:{port}")[0] == 200
        assert get(at, "/staff/state", host=f"sentry-north.local:{port}")[0] == 200
