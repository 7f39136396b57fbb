"""The sentry's exception tree.

Callers catch the narrowest class that they can act on; the CLI turns any of these into a one-line
message and an exit code, so no traceback ever reaches a field technician's terminal.
"""

from __future__ import annotations


class EdgeSentryError(Exception):
    """Base of every error the sentry raises on purpose."""


class ConfigError(EdgeSentryError):
    """A configuration that cannot be used; carries every problem found, each by key path."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{path}: {message}" for path, message in problems))


class CameraError(EdgeSentryError):
    """The frame source cannot deliver frames (missing device, unreadable files, bad settings)."""


class GpioError(EdgeSentryError):
    """The pin factory or a gate device could not be set up."""


class TrustListError(EdgeSentryError):
    """A trust list that cannot be read or does not follow the trust-list format."""


class CodeError(EdgeSentryError):
    """An entry code whose bytes do not follow its format; maps to the `malformed` reason."""


class LinkError(EdgeSentryError):
    """The link cannot be set up: no broker configured, unreadable credentials or TLS files."""
