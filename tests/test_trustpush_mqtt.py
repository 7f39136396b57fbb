"""Trust push over a real broker: a signed newer list is taken and announced; a forged one is reported
and the old list kept."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cbor2
import pytest
from codes_helpers import trust_list

from edge_sentry.codes import keys
from edge_sentry.link import Link
from edge_sentry.link.trustpush import TrustPush, load_initial

WAIT = 20.0


@pytest.fixture
def root():
    return keys.generate()


@pytest.fixture
def attached(broker, broker_config, root, open_store) -> Iterator[tuple[TrustPush, Link, Any]]:
    config = broker_config()
    push = TrustPush(trust_list(keys.generate(), version=3), root.public_key(), open_store(config))
    link = Link(config)
    push.attach(link)
    link.start()
    assert link.wait_subscribed(WAIT), broker.log_tail()
    try:
        yield push, link, config
    finally:
        link.stop(2.0)
        cleaner = broker.subscriber("nothing/at/all")
        cleaner.publish(f"{link.topics.prefix}/trust", b"", retain=True)
        cleaner.close()


def body(message: Any) -> dict[str, Any]:
    return cbor2.loads(message.payload)


def test_a_signed_newer_list_is_taken_kept_and_announced(broker, subscriber, root, attached):
    push, link, _config = attached
    prefix = link.topics.prefix
    operator = subscriber([f"{prefix}/event", f"{prefix}/state"])
    operator.publish(f"{prefix}/trust", trust_list(keys.generate(), version=8).signed(root), retain=True)
    event = operator.wait_for(f"{prefix}/event", lambda m: body(m)["event"] == "trust-updated", WAIT)
    assert event is not None, broker.log_tail()
    assert (body(event)["version"], body(event)["previous"]) == (8, 3)
    assert push.trust.version == 8
    state = operator.wait_for(f"{prefix}/state", lambda m: body(m).get("trust_version") == 8, WAIT)
    assert state is not None
    found, _ = load_initial(None, push.store)
    assert found is not None and found.version == 8


def test_a_forged_list_is_reported_and_the_old_one_kept(broker, subscriber, attached):
    push, link, _config = attached
    prefix = link.topics.prefix
    operator = subscriber(f"{prefix}/event")
    forger = keys.generate()
    operator.publish(f"{prefix}/trust", trust_list(keys.generate(), version=99).signed(forger), retain=True)
    event = operator.wait_for(f"{prefix}/event", lambda m: body(m)["event"] == "trust-rejected", WAIT)
    assert event is not None, broker.log_tail()
    assert body(event)["reason"] == "bad-signature" and body(event)["current"] == 3
    assert push.trust.version == 3
    assert push.store.pushed_trust() is None


def test_a_list_over_mqtt_max_payload_but_within_the_trust_cap_is_taken(broker, subscriber, root, attached):
    """A real DCC list (every EU signer certificate) is a few hundred KB, over mqtt.max_payload's
    default: the link must not drop it silently before the trust push can judge it."""
    push, link, config = attached
    prefix = link.topics.prefix
    operator = subscriber(f"{prefix}/event")
    revoked = tuple(i.to_bytes(16, "big") for i in range(9000))
    signed = trust_list(keys.generate(), version=9, revoked_subs=revoked).signed(root)
    assert config.mqtt.max_payload < len(signed) < push.max_bytes
    operator.publish(f"{prefix}/trust", signed, retain=True)
    event = operator.wait_for(f"{prefix}/event", lambda m: body(m)["event"].startswith("trust-"), WAIT)
    assert event is not None, (link.stats(), broker.log_tail())
    assert body(event)["event"] == "trust-updated" and push.trust.version == 9
