"""The sentry's exception tree: every exception class of the package, in one flat, documented list.

Callers catch the narrowest class that they can act on; the CLI turns any of these into a one-line
message and an exit code (UsageError and ConfigError: 2), so no traceback ever reaches a field
technician's terminal. A class also derives from the builtin a caller would naturally catch for it
(a malformed input is a ValueError, a broker that cannot be reached a ConnectionError). Where no
builtin fits, or where one would be caught by a broad handler meant for something else, the class
derives from EdgeSentryError alone, and its docstring says why.

This module defines classes only: it never imports from the package, so any module may import it.
"""

from __future__ import annotations


class EdgeSentryError(Exception):
    """Base of every error the sentry raises on purpose."""


# -- configuration and command line ------------------------------------------------------------


class ConfigError(EdgeSentryError, ValueError):
    """A configuration that cannot be used; carries every problem found, each by key path."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))


class UsageError(EdgeSentryError, ValueError):
    """A command-line option, argument or input file that cannot be used; the message names it.
    Nothing was sent, written or published; every command exits 2 for it."""


class ArgError(UsageError):
    """A command's `--arg` that is not KEY=VALUE, or names a key twice."""


class WipeRefused(EdgeSentryError):
    """Wipe will not touch anything; the message says why and what to do.

    No builtin base: some refusals come from the filesystem (a lock it cannot take), others from
    the rules (a folder no wipe may work in); the caller acts the same on both.
    """


# -- hardware ----------------------------------------------------------------------------------


class CameraError(EdgeSentryError):
    """The frame source cannot deliver frames (missing device, unreadable files, bad settings)."""


class GpioError(EdgeSentryError):
    """The pin factory or a gate device could not be set up."""


class PagesUnavailable(EdgeSentryError, OSError):
    """The pages cannot be served (the port is taken, the address is not this machine's): the
    sentry logs it and runs without them; the gate never depends on its pages."""
class VoiceError(EdgeSentryError):
    """A prompt cannot be rendered or played (no text-to-speech engine, no player, no audio
    device, a damaged file); the message names what to install or fix.

    No builtin base: the causes are a missing program (an OSError), a program's refusal (its exit
    status) and a bad file (a ValueError from `wave`), and the gate treats all of them alike: it
    goes on deciding, silently.
    """


# -- codes, keys and trust lists ---------------------------------------------------------------


class CodeError(EdgeSentryError, ValueError):
    """An entry code whose bytes do not follow its format; maps to the `malformed` reason."""


class UnsupportedAlgorithmError(CodeError):
    """A well-formed message signed with an algorithm this build cannot verify."""


class ContentTypeError(CodeError):
    """A signed object whose COSE content type names another kind of object (or none where one is
    required): a signature over a venue poster never passes as a trust list, nor the reverse."""


class TrustListError(EdgeSentryError, ValueError):
    """A trust list that cannot be read or does not follow the trust-list format."""


class KeyFileError(EdgeSentryError):
    """A key file that cannot be written, read or used; the message names the file.

    Not an OSError: the key commands tell a file they could not write (OSError, exit 1) from a key
    the operator must fix (exit 2), and this is the second kind.
    """


class ExposedSecretError(EdgeSentryError, PermissionError):
    """A secret file (a private key, a broker password) that group or others may read or write:
    never used, since another account may already know or swap the secret. The message names the
    file and its mode. A PermissionError, since that is what it is, but raised only by
    `files.read_private`, whose callers turn it into their own error, message unchanged."""


class AuthorityKeyError(KeyFileError):
    """An authority key file that cannot be read or used; the message names the file."""


class SubjectError(EdgeSentryError, ValueError):
    """A sealed subject that cannot be opened; `reason` is one short word for reports.

    Reasons: `malformed` (not the sealed-subject format), `no-context` (the event lacks site,
    device, entrance or an integer t), `wrong-key` (sealed to another authority key),
    `cannot-open` (the key fits but the ciphertext or the event's fields were altered).
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


# -- storage -----------------------------------------------------------------------------------


class StorageError(EdgeSentryError):
    """A log file that cannot be used at all: not ours, unreadable, or locked by another process.

    Not an OSError: the outbox and the log files treat an OSError as a disk that may recover (retry,
    count it in health), while this is a file they must never use.
    """


# -- the fleet link ----------------------------------------------------------------------------


class LinkError(EdgeSentryError):
    """The link cannot be set up: no broker configured, unreadable credentials or TLS files."""


class TopicError(EdgeSentryError, ValueError):
    """A topic or topic segment that does not follow the naming contract."""


class PayloadError(EdgeSentryError, ValueError):
    """A payload that cannot be used: too large, malformed, or not the expected shape."""


class ConfigRejected(EdgeSentryError, ValueError):
    """A desired config that is not applied; carries its problems, each as (key path, message), for
    the `errors` of `config/reported`."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))
        self.problems = problems


class TrustRefused(EdgeSentryError, ValueError):
    """A pushed trust list that is not taken; `reason` is the short word of the `trust-rejected`
    event, `detail` says what was wrong."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class ControlRefused(EdgeSentryError, ValueError):
    """A message on a control topic that is not acted on; `reason` is one of
    vocabulary.ControlRefusal, `operator` the kid of the key that signed it once that signature
    verified (None before), `detail` says what was wrong."""

    def __init__(self, reason: str, detail: str, operator: bytes | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.operator = operator


class CommandError(EdgeSentryError, RuntimeError):
    """Raised by a remote command that ran and failed: answered `error` with this message."""


class CommandRejected(EdgeSentryError, ValueError):
    """Raised by a remote command that refuses its request (bad args, not allowed): answered
    `rejected` with this message."""


# -- the operator's tools ----------------------------------------------------------------------


class FleetError(EdgeSentryError, ConnectionError):
    """The broker cannot be used for this request: unreachable, refused, or it refused a message."""


class InventoryError(UsageError):
    """A fleet inventory (TOML) that cannot be provisioned; carries every problem, each by key path.
    Nothing was written."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{path}: {message}" if path else message for path, message in problems))


class ProvisionError(EdgeSentryError):
    """A provisioning folder whose existing files do not fit together (a key without its
    certificate's match, a certificate from another CA); the message names the file. Nothing was
    written.

    Not an OSError: a file that cannot be read or written is an OSError (exit 1 as well), while this
    is a folder the operator must look at before anything is issued into it.
    """


# -- the fleet back end ------------------------------------------------------------------------


class StoreError(EdgeSentryError):
    """The back end's database cannot be opened or migrated (unreachable, refused, a schema newer
    than this program's, a driver that is not installed); the message names the database.

    Not an OSError: an ingester that cannot reach its database at start stops with this one line,
    while a failure of one batch later is the driver's own error, and the batch is retried.
    """


class EventRefused(EdgeSentryError, ValueError):
    """One event of a sentry's message that the back end stores as a reject, not a record;
    `reason` is a vocabulary.Rejection, `detail` says what was wrong (never quoting the event)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
