"""Trust push over a real broker: a signed newer list for this sentry is taken and announced; a forged
one, one for another site or device, and a genuine root signature over something else (a venue poster)
are reported and the old list kept."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import cbor2
import pytest
from codes_helpers import trust_list

from edge_sentry.codes import base45, cose, keys, vc1
from edge_sentry.link import Link
from edge_sentry.link.trustpush import TrustPush, load_initial

WAIT = 20.0


@pytest.fixture
def root():
    return keys.generate()


@pytest.fixture
def attached(broker, broker_config, root, open_store) -> Iterator[tuple[TrustPush, Link, Any]]:
    config = broker_config()
    push = TrustPush(
        trust_list(keys.generate(), version=3), root.public_key(), open_store(config),
        site=config.device.site, device=config.device.id,
    )
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


def for_site(config: Any, **kwargs: Any) -> Any:
    """A trust list addressed to the whole site of the sentry of `config`."""
    return trust_list(keys.generate(), audience={"sites": [config.device.site]}, **kwargs)


def refused(broker: Any, subscriber: Any, attached: Any, payload: bytes) -> dict[str, Any]:
    """Push `payload` as the retained trust list; the `trust-rejected` event it raised, after
    checking that nothing changed."""
    push, link, _config = attached
    prefix = link.topics.prefix
    operator = subscriber(f"{prefix}/event")
    before = push.trust
    operator.publish(f"{prefix}/trust", payload, retain=True)
    event = operator.wait_for(f"{prefix}/event", lambda m: body(m)["event"].startswith("trust-"), WAIT)
    assert event is not None, broker.log_tail()
    assert body(event)["event"] == "trust-rejected" and body(event)["current"] == 3
    assert push.trust is before and push.store.pushed_trust() is None
    return body(event)


def test_a_signed_newer_list_is_taken_kept_and_announced(broker, subscriber, root, attached):
    push, link, _config = attached
    prefix = link.topics.prefix
    operator = subscriber([f"{prefix}/event", f"{prefix}/state"])
    operator.publish(f"{prefix}/trust", for_site(_config, version=8).signed(root), retain=True)
    event = operator.wait_for(f"{prefix}/event", lambda m: body(m)["event"] == "trust-updated", WAIT)
    assert event is not None, broker.log_tail()
    assert (body(event)["version"], body(event)["previous"]) == (8, 3)
    assert push.trust.version == 8
    state = operator.wait_for(f"{prefix}/state", lambda m: body(m).get("trust_version") == 8, WAIT)
    assert state is not None
    found, _ = load_initial(None, push.store)
    assert found is not None and found.version == 8


def test_a_forged_list_is_reported_and_the_old_one_kept(broker, subscriber, attached):
    forged = for_site(attached[2], version=99).signed(keys.generate())
    assert refused(broker, subscriber, attached, forged)["reason"] == "bad-signature"


def test_a_list_signed_for_another_site_is_refused(broker, subscriber, root, attached):
    elsewhere = trust_list(keys.generate(), version=9, audience={"sites": ["another-site"]})
    event = refused(broker, subscriber, attached, elsewhere.signed(root))
    assert event["reason"] == "audience"


def test_a_list_signed_for_another_device_of_the_site_is_refused(broker, subscriber, root, attached):
    site = attached[2].device.site
    other = trust_list(keys.generate(), version=9, audience={"devices": [f"{site}/another-gate"]})
    assert refused(broker, subscriber, attached, other.signed(root))["reason"] == "audience"


def test_a_list_with_no_audience_is_refused(broker, subscriber, root, attached):
    unaddressed = trust_list(keys.generate(), version=9)
    assert refused(broker, subscriber, attached, unaddressed.signed(root))["reason"] == "audience"


def test_a_genuine_venue_poster_pushed_as_a_trust_list_is_refused(broker, subscriber, root, attached):
    poster = vc1.issue(root, site=attached[2].device.site, venue="v", entrance="e", name="n")
    event = refused(broker, subscriber, attached, base45.decode(poster.removeprefix(vc1.PREFIX)))
    assert event["reason"] == "content-type"


def test_a_list_signed_without_its_content_type_is_refused(broker, subscriber, root, attached):
    untyped = cose.sign1(root, for_site(attached[2], version=9).to_cbor(), kid=keys.kid_of(root))
    event = refused(broker, subscriber, attached, untyped)
    assert event["reason"] == "content-type" and "no content type" in event["detail"]


def test_a_list_over_mqtt_max_payload_but_within_the_trust_cap_is_taken(broker, subscriber, root, attached):
    """A real DCC list (every EU signer certificate) is a few hundred KB, over mqtt.max_payload's
    default: the link must not drop it silently before the trust push can judge it."""
    push, link, config = attached
    prefix = link.topics.prefix
    operator = subscriber(f"{prefix}/event")
    revoked = tuple(i.to_bytes(16, "big") for i in range(9000))
    signed = for_site(config, version=9, revoked_subs=revoked).signed(root)
    assert config.mqtt.max_payload < len(signed) < push.max_bytes
    operator.publish(f"{prefix}/trust", signed, retain=True)
    event = operator.wait_for(f"{prefix}/event", lambda m: body(m)["event"].startswith("trust-"), WAIT)
    assert event is not None, (link.stats(), broker.log_tail())
    assert body(event)["event"] == "trust-updated" and push.trust.version == 9
