"""Trust push: only a newer list signed by the fleet's trust-root key replaces the one in use; every
refusal keeps the old list, writes nothing and is reported as a `trust-rejected` event."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import cbor2
import pytest
from codes_helpers import trust_doc, trust_list

from edge_sentry.codes import base45, cose, keys, vc1
from edge_sentry.codes.trust import TrustList
from edge_sentry.link.trustpush import TrustPush, load_initial
from edge_sentry.state import STORE_FILE, StateStore
from edge_sentry.vocabulary import ContentType

HERE = {"site": "s1", "device": "gate-1"}
FOR_HERE = {"sites": ["s1"]}
listed = functools.partial(trust_list, audience=FOR_HERE)


def make_push(*args: Any, **kwargs: Any) -> TrustPush:
    """The trust push of sentry gate-1 at site s1."""
    return TrustPush(*args, **HERE, **kwargs)


class Events:
    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        self.items.append(event)


@pytest.fixture
def root():
    return keys.generate()


@pytest.fixture
def issuer():
    return keys.generate()


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def store(tmp_path: Path, open_store) -> StateStore:
    return open_store(tmp_path)


@pytest.fixture
def push(store: StateStore, root, issuer, events: Events) -> TrustPush:
    return make_push(listed(issuer, version=5), root.public_key(), store, record=events)


def test_a_newer_signed_list_is_accepted_kept_and_announced(push: TrustPush, root, issuer, tmp_path, events):
    swapped: list[TrustList] = []
    push.add_listener(swapped.append)
    newer = listed(issuer, keys.generate(), version=6)
    outcome = push.handle(newer.signed(root))
    assert outcome.status == "accepted" and outcome.version == 6
    assert push.trust.version == 6 and push.trust.to_mapping() == newer.to_mapping()
    assert swapped == [push.trust]
    text = push.store.pushed_trust()
    assert text is not None and text.lstrip().startswith("{")  # the JSON form
    assert TrustList.from_json(text).to_mapping() == newer.to_mapping()
    assert [e["event"] for e in events.items] == ["trust-updated"]
    assert events.items[0]["version"] == 6 and events.items[0]["previous"] == 5
    assert events.items[0]["persisted"] is True


@pytest.mark.parametrize(
    "audience",
    [{"sites": ["s1"]}, {"sites": ["*"]}, {"devices": ["s1/gate-1"]}, {"sites": ["s9"], "devices": ["*"]}],
    ids=["its site", "every site", "the device at its site", "every device"],
)
def test_a_list_addressed_to_this_sentry_is_taken(push: TrustPush, root, issuer, audience):
    outcome = push.handle(trust_list(issuer, version=6, audience=audience).signed(root))
    assert outcome.status == "accepted" and push.trust.audience is not None
    assert push.trust.to_mapping()["audience"] == {"sites": [], "devices": []} | audience


def test_the_same_list_again_is_unchanged_and_not_reported(push: TrustPush, root, events):
    same = TrustList.from_mapping(push.trust.to_mapping())
    outcome = push.handle(same.signed(root))
    assert outcome.status == "unchanged"
    assert events.items == []


def test_an_empty_message_changes_nothing(push: TrustPush, events):
    before = push.trust
    assert push.handle(b"").status == "unchanged"
    assert push.trust is before and events.items == []


def _typed(root, body: bytes, content_type: str | None = ContentType.TRUST) -> bytes:
    """`body` signed by `root` with this content type (None: without one)."""
    return cose.sign1(root, body, kid=keys.kid_of(root), content_type=content_type)


def _unsupported_alg(root, body: bytes) -> bytes:
    protected = cose.encode_header({cose.HEADER_ALG: -65535, cose.HEADER_KID: keys.kid_of(root)})
    return cose.encode_sign1(protected, {}, body, b"\x00" * 64)


REFUSALS = {
    "signed by another key": (
        lambda root, issuer: listed(issuer, version=9).signed(keys.generate()),
        "bad-signature",
    ),
    "tampered after signing": (
        lambda root, issuer: (
            listed(issuer, version=9).signed(root).replace(b"test-issuer", b"evil-issuer")
        ),
        "bad-signature",
    ),
    "not signed at all": (lambda root, issuer: listed(issuer, version=9).to_cbor(), "malformed"),
    "the JSON file form": (
        lambda root, issuer: listed(issuer, version=9).to_json().encode(),
        "malformed",
    ),
    "garbage": (lambda root, issuer: b"\x9f\x00garbage", "malformed"),
    "trailing bytes": (
        lambda root, issuer: listed(issuer, version=9).signed(root) + b"\x00",
        "malformed",
    ),
    "signed, not a trust list": (
        lambda root, issuer: _typed(root, cbor2.dumps({"version": 9})),
        "invalid",
    ),
    "signed, not CBOR": (lambda root, issuer: _typed(root, b"\xff\xff"), "invalid"),
    "unknown key in the list": (
        lambda root, issuer: _typed(root, cbor2.dumps({**trust_doc(issuer, version=9), "extra": 1})),
        "invalid",
    ),
    "signed with no content type": (
        lambda root, issuer: _typed(root, listed(issuer, version=9).to_cbor(), None),
        "content-type",
    ),
    "signed as a venue poster": (
        lambda root, issuer: _typed(root, listed(issuer, version=9).to_cbor(), ContentType.VENUE),
        "content-type",
    ),
    "signed as a control message": (
        lambda root, issuer: _typed(root, listed(issuer, version=9).to_cbor(), ContentType.CONTROL),
        "content-type",
    ),
    "content type outside the signature": (
        lambda root, issuer: cose.sign1(
            root, listed(issuer, version=9).to_cbor(), kid=keys.kid_of(root),
            unprotected={cose.HEADER_CONTENT_TYPE: ContentType.TRUST},
        ),
        "content-type",
    ),
    "a genuine venue poster": (
        lambda root, issuer: base45.decode(
            vc1.issue(root, site="s1", venue="v", entrance="e", name="n").removeprefix(vc1.PREFIX)
        ),
        "content-type",
    ),
    "no audience": (lambda root, issuer: trust_list(issuer, version=9).signed(root), "audience"),
    "for another site": (
        lambda root, issuer: trust_list(issuer, version=9, audience={"sites": ["s2"]}).signed(root),
        "audience",
    ),
    "for another device of the site": (
        lambda root, issuer: trust_list(issuer, version=9, audience={"devices": ["s1/gate-2"]}).signed(root),
        "audience",
    ),
    "for a device of the same name at another site": (
        lambda root, issuer: trust_list(issuer, version=9, audience={"devices": ["s2/gate-1"]}).signed(root),
        "audience",
    ),
    "an audience that names nobody": (
        lambda root, issuer: _typed(root, cbor2.dumps(trust_doc(issuer, version=9, audience={"sites": []}))),
        "invalid",
    ),
    "unsupported algorithm": (
        lambda root, issuer: _unsupported_alg(root, listed(issuer, version=9).to_cbor()),
        "unsupported-algorithm",
    ),
    "lower version": (lambda root, issuer: listed(issuer, version=4).signed(root), "old-version"),
    "same version, other content": (
        lambda root, issuer: listed(issuer, keys.generate(), version=5).signed(root),
        "old-version",
    ),
}


@pytest.mark.parametrize("make, reason", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_refused_list_keeps_the_old_one_and_is_reported(
    push: TrustPush, root, issuer, tmp_path: Path, events: Events, make, reason: str
):
    swapped: list[TrustList] = []
    push.add_listener(swapped.append)
    before = push.trust
    written = (tmp_path / STORE_FILE).read_bytes()
    outcome = push.handle(make(root, issuer))
    assert (outcome.status, outcome.reason) == ("rejected", reason)
    assert push.trust is before and swapped == []
    assert push.store.pushed_trust() is None
    assert (tmp_path / STORE_FILE).read_bytes() == written  # nothing written
    assert len(events.items) == 1
    event = events.items[0]
    assert event["event"] == "trust-rejected" and event["reason"] == reason
    assert event["current"] == 5 and isinstance(event["detail"], str) and isinstance(event["t"], int)


def test_without_a_root_key_nothing_is_accepted(store: StateStore, root, issuer, events: Events):
    push = make_push(listed(issuer, version=1), None, store, record=events)
    outcome = push.handle(listed(issuer, version=2).signed(root))
    assert (outcome.status, outcome.reason) == ("rejected", "no-root-key")
    assert push.trust.version == 1
    assert events.items[0]["reason"] == "no-root-key"


def test_an_oversized_message_is_refused_unread(store: StateStore, root, issuer):
    push = make_push(listed(issuer, version=1), root.public_key(), store, max_bytes=64)
    outcome = push.handle(listed(issuer, version=2).signed(root))
    assert (outcome.status, outcome.reason) == ("rejected", "too-large")


def test_an_unwritable_state_folder_still_swaps_the_newer_list_in(
    tmp_path: Path, open_store, root, issuer, events
):
    blocker = tmp_path / "state"
    blocker.write_text("not a folder")
    push = make_push(listed(issuer, version=1), root.public_key(), open_store(blocker), record=events)
    outcome = push.handle(listed(issuer, version=2).signed(root))
    assert outcome.status == "accepted" and push.trust.version == 2
    assert events.items[0]["persisted"] is False


def test_a_failing_listener_or_recorder_does_not_undo_the_swap(store: StateStore, root, issuer):
    def broken(*_: Any) -> None:
        raise RuntimeError("bug")

    push = make_push(listed(issuer, version=1), root.public_key(), store, record=broken)
    push.add_listener(broken)
    assert push.handle(listed(issuer, version=2).signed(root)).status == "accepted"
    assert push.trust.version == 2


# -- after a restart ----------------------------------------------------------------------------


def test_a_restart_finds_the_pushed_list(push: TrustPush, root, issuer, tmp_path: Path, open_store):
    push.handle(listed(issuer, version=7).signed(root))
    restarted = open_store(tmp_path)
    found, problem = load_initial(None, restarted)
    assert problem is None and found is not None and found.version == 7
    again = make_push(found, root.public_key(), restarted)
    assert again.handle(listed(issuer, version=7).signed(root)).status == "unchanged"


def test_the_higher_version_of_the_file_and_the_pushed_list_wins(tmp_path: Path, root, issuer, open_store):
    state = open_store(tmp_path / "state")
    make_push(listed(issuer, version=1), root.public_key(), state).handle(
        listed(issuer, version=7).signed(root)
    )
    provisioned = tmp_path / "trust.json"
    provisioned.write_text(listed(issuer, version=3).to_json())
    assert load_initial(provisioned, state)[0].version == 7
    provisioned.write_text(listed(issuer, version=9).to_json())
    assert load_initial(provisioned, state)[0].version == 9


def test_a_pushed_list_kept_by_an_older_sentry_still_counts(tmp_path: Path, issuer, open_store):
    state = tmp_path / "state"
    state.mkdir()
    (state / "trust.json").write_text(listed(issuer, version=8).to_json())
    found, problem = load_initial(None, open_store(state))
    assert problem is None and found is not None and found.version == 8


def test_a_broken_list_is_skipped_when_the_other_loads(tmp_path: Path, issuer, open_store):
    provisioned = tmp_path / "trust.json"
    provisioned.write_text(listed(issuer, version=3).to_json())
    store = open_store(tmp_path / "state")
    store.keep_pushed_trust("{broken")
    found, problem = load_initial(provisioned, store)
    assert found is not None and found.version == 3 and problem is None
    provisioned.write_text("{broken too")
    store.keep_pushed_trust(listed(issuer, version=4).to_json())
    found, problem = load_initial(provisioned, store)
    assert found is not None and found.version == 4 and problem is None


def test_no_usable_list_says_why(tmp_path: Path, store: StateStore):
    found, problem = load_initial(tmp_path / "missing.json", store)
    assert found is None and "missing.json" in (problem or "")
    found, problem = load_initial(None, store)
    assert found is None and "trust.file" in (problem or "")
