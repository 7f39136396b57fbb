"""systemd's notify protocol: readiness, status and the watchdog, with no library beyond the socket module.

systemd restarts the sentry (and, with a hardware watchdog, the Pi) when the keep-alive stops, so the
keep-alive is sent only by the hot loop, at each of its turns: a frame or a camera timeout alike, since
a dead camera is a fault the running loop handles (buttons working), while a loop stuck in a read or a
decode stops sending by itself. Outside systemd (no NOTIFY_SOCKET) every call is a no-op.

The socket is opened once, with the notifier: a process that has run out of file descriptors (a
flood of connections to the pages, say) must still be able to send its keep-alive, or systemd would
restart a sentry whose gate works.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time


class Notifier:
    def __init__(self, address: str | None = None):
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        if address and address.startswith("@"):
            address = "\0" + address[1:]  # abstract socket namespace
        self._address = address or None
        self._sock: socket.socket | None = None
        if self._address is not None:
            self._sock = self._open()
        usec = os.environ.get("WATCHDOG_USEC", "")
        # Ping at half the configured interval, as sd_watchdog_enabled(3) recommends.
        self.watchdog_interval_s = int(usec) / 2_000_000 if usec.isdigit() else None
        self._last_ping = 0.0

    @property
    def turn_limit_s(self) -> float | None:
        """How long one turn of the hot loop may wait, so that its keep-alive still comes in time.

        Keep-alives are sent at most once per `watchdog_interval_s`, on a turn; turns of at most half
        that keep the gap under 1.5 intervals (three quarters of WatchdogSec), whatever
        `camera.timeout_s` says. None without a watchdog.
        """
        return None if self.watchdog_interval_s is None else self.watchdog_interval_s / 2

    @property
    def enabled(self) -> bool:
        return self._address is not None

    @staticmethod
    def _open() -> socket.socket | None:
        try:
            return socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        except OSError:
            return None  # tried again at the next send

    def send(self, message: str) -> None:
        if self._address is None:
            return
        if self._sock is None:
            self._sock = self._open()
            if self._sock is None:
                return
        # A notify failure must not stop the gate; systemd will notice the silence itself.
        with contextlib.suppress(OSError):
            # Not connected: each datagram goes to the address as it is now, so a notify socket that
            # systemd has made anew is still reached. Never waits: the hot loop sends this itself,
            # and a queue full at systemd's end (datagrams not yet read) must cost one message, not
            # the gate.
            self._sock.sendto(message.encode(), socket.MSG_DONTWAIT, self._address)

    def close(self) -> None:
        """Close the socket (the daemon's end); a send after it opens it again."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def ready(self, status: str = "") -> None:
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def progress(self) -> None:
        """Called by the hot loop at each turn, frame or not; rate-limited to half the watchdog period."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic()
        if now - self._last_ping >= self.watchdog_interval_s:
            self._last_ping = now
            self.send("WATCHDOG=1")
