"""The contract's words: verdicts, reasons, modes, event names, refusals and command statuses.

Operators' tools, the back end and outside checks read these strings in scan events, event-log
lines, MQTT payloads and command answers, so each lives here once, as a `StrEnum` whose values are
exactly the contract strings. A member is a `str`: it compares equal to the plain string, encodes as a
plain JSON or CBOR text string and formats as its value, so what is decoded from the wire or from
the outbox (plain strings) and what the code writes (members) mix freely.

Pure: no imports from the package, no I/O. Adding or renaming a value changes the contract: it
needs a version bump and a note, never a quiet edit.
"""

from __future__ import annotations

from enum import StrEnum


class Verdict(StrEnum):
    """What the gate does with a code: `verdict` of a scan event."""

    ACCEPT = "accept"
    DENY = "deny"


class Reason(StrEnum):
    """Why: `reason` of a scan event, in the order the verifier checks (`ok` is the accept)."""

    OK = "ok"
    MALFORMED = "malformed"
    UNSUPPORTED = "unsupported"
    UNKNOWN_KEY = "unknown-key"
    BAD_SIGNATURE = "bad-signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not-yet-valid"
    STALE = "stale"
    REVOKED = "revoked"
    STATUS = "status"
    PASSBACK = "passback"
    WRONG_VENUE = "wrong-venue"
    ASSIST = "assist"  # valid, but entry needs staff: a paper code


class Mode(StrEnum):
    """How a person entered: `mode` of a scan event."""

    SCAN = "scan"
    MANUAL = "manual"  # the staff button
    EXIT = "exit"  # the request-to-exit button
    ASSISTED = "assisted"  # a paper code confirmed by the staff button


class Refusal(StrEnum):
    """The policy that withholds a valid code's entry: `refused` of a `deny` / `ok` scan event."""

    TRUST_STALE = "trust-stale"
    CLOCK_UNSYNCED = "clock-unsynced"
    FAULT = "fault"  # a secure fail mode


class Event(StrEnum):
    """The `event` of an event-log line and of an `event` message: what happened."""

    SCAN = "scan"
    START = "start"
    STOP = "stop"
    DOOR_OPENED = "door-opened"
    DOOR_CLOSED = "door-closed"
    DOOR_FORCED = "door-forced"
    DOOR_HELD = "door-held"
    TAILGATE = "tailgate"
    ASSIST_EXPIRED = "assist-expired"
    FAULT = "fault"
    FAULT_CLEARED = "fault-cleared"
    CAMERA_FAULT = "camera-fault"
    CAMERA_RECOVERED = "camera-recovered"
    VENUE_CODE = "venue-code"
    GATE_PULSE = "gate-pulse"  # a grant that is not a person's entry
    TRUST_INVALID = "trust-invalid"
    TRUST_STALE = "trust-stale"
    TRUST_UPDATED = "trust-updated"
    TRUST_REJECTED = "trust-rejected"
    CONTROL_REJECTED = "control-rejected"  # a config or command refused by the signed control plane
    CLOCK_UNSYNCED = "clock-unsynced"
    OUTBOX_FULL = "outbox-full"
    DISK_LOW = "disk-low"


class ControlRefusal(StrEnum):
    """Why a message on a control topic (`config/desired`, `all/config/desired`, `cmd/*`) is not
    acted on: in command answers, `config/reported` errors (path `signature`) and
    `control-rejected` events."""

    UNSIGNED = "unsigned"  # not a signed control message (JSON, bare CBOR, another signed object)
    BAD_SIGNATURE = "bad-signature"
    UNKNOWN_OPERATOR = "unknown-operator"  # no operator key with this kid in the current trust list
    ROLE = "role"  # the key may not sign this kind of message
    SCOPE = "scope"  # the key may not address this site
    AUDIENCE = "audience"  # signed for another topic or device
    STALE = "stale"  # a command's iat is too far from the sentry's clock
    REPLAY = "replay"  # a command's jti was seen before
    RETAINED = "retained"  # a command delivered as a retained message
    DEADLINE = "deadline"  # a command's deadline is too far after its iat
    VERSION = "version"  # a config version outside 0 .. 2^53 - 1


class Role(StrEnum):
    """What an operator key may sign: `roles` of a trust list's `operators` entry."""

    CONFIG = "config"
    COMMAND = "command"


class TrustRejection(StrEnum):
    """`reason` of a `trust-rejected` event: why a pushed trust list was not taken."""

    NO_ROOT_KEY = "no-root-key"  # trust.root_key not configured or unreadable: nothing can be verified
    TOO_LARGE = "too-large"
    MALFORMED = "malformed"  # not a COSE_Sign1
    UNSUPPORTED_ALGORITHM = "unsupported-algorithm"
    BAD_SIGNATURE = "bad-signature"  # not signed by the trust-root key
    CONTENT_TYPE = "content-type"  # signed by the root, but not as a trust list (or with no type)
    INVALID = "invalid"  # signed, but the list inside does not follow the format
    AUDIENCE = "audience"  # a genuine list for other sites or devices
    OLD_VERSION = "old-version"  # lower than the list in use, or equal with other content


class ContentType(StrEnum):
    """The COSE content type (protected header label 3) of each kind of object the trust-root key or
    an operator key signs: a signature over one kind never passes as another."""

    TRUST = "application/vnd.edge-sentry.trust+cbor"
    VENUE = "application/vnd.edge-sentry.venue+cbor"
    CONTROL = "application/vnd.edge-sentry.control+cbor"


class CommandStatus(StrEnum):
    """`status` of the answer to a `cmd/{name}` request."""

    OK = "ok"
    ERROR = "error"
    EXPIRED = "expired"
    REJECTED = "rejected"
    UNKNOWN_COMMAND = "unknown-command"


class Rejection(StrEnum):
    """Why the fleet's ingester stored a message or an event as rejected rather than as a record:
    `reason` of the back end's `rejects` table (docs/protocol.md, "The fleet back end")."""

    MALFORMED = "malformed"  # the payload is not CBOR or JSON, or not the map or array its topic carries
    BAD_FIELD = "bad-field"  # a field missing, of the wrong type, or out of range
    PROVENANCE = "provenance"  # the event's own site or device is not the topic's
    CLOCK_SKEW = "clock-skew"  # the event's time is further ahead of its arrival than ingest.max_future_s
    UNKNOWN_TOPIC = "unknown-topic"  # a topic the contract does not name
