"""The verifier: a code's text in, a Decision out (docs/protocol.md section 2). Never raises, never blocks.

It runs on the hot path for every text the decoder finds, most of them from strangers, so every
failure inside becomes a `deny` with a reason instead of an exception, and the only state it keeps
is the bounded in-memory passback window. It never logs code texts or subjects.

Precedence of reasons for an ES1 code (the first rule that fails names the denial):

1. `malformed`     the text is over 4 KB, or the envelope does not parse
2. `unknown-key`   no trusted es1 key has the code's kid
3. `bad-signature` the signature does not hold; nothing in the payload is read before this point
4. `malformed`     the signed claims do not follow the format (the issuer's fault; still no entry)
4a. `unknown-key`  the signed `iss` is not the issuer the trust list names for that kid: the key is
                   trusted for one issuer only, and a code that claims another is not known to us
5. `revoked`       the key or the subject is revoked: whatever else is true, this holder is refused
6. `not-yet-valid` iat - skew > now
7. `expired`       now >= exp + skew
8. `stale`         now - iat > max_age_s + skew (not for paper codes, whose lifetime is their exp)
9. `status`        the status claim is not in `es1.accept_status`
10. `wrong-venue`  the code names a venue that is not this sentry's
11. `passback`     the same subject was let in at this entrance within `gate.passback_s`
12. `assist`       a valid paper code: staff must confirm (the gate may grant it as `assisted`)
13. `ok`           accept, and the subject enters the passback window

Authenticity comes first because nothing else can be believed without it; revocation before time so
that a revoked holder is reported as such even with an old code; passback late because it is the
only rule that depends on this sentry's own history; assist last so staff are only ever called for a
code that would otherwise have been accepted.

Precedence for a DCC (`HC1:`, the EU Digital COVID Certificate; scheme "dcc"):

1. `unsupported`   `dcc.accept` is empty (this sentry takes no DCC), or the prefix is another version
                   of the scheme (`HC2:`...)
2. `malformed`     over 4 KB, or a layer of the envelope does not parse: Base45, zlib (including a stream
                   that inflates past `dcc.MAX_INFLATED`), CBOR, COSE (tags 61 and 18 optional)
3. `malformed`     no 8-byte kid in either header (the protected one counts when both carry one)
4. `unsupported`   the COSE algorithm is not ES256, ES384, ES512 or PS256 (read from the unprotected
                   header only when the protected header is empty)
5. `unknown-key`   no usable signer certificate with the code's kid in the trust list
6. `bad-signature` the signature holds under none of the certificates with that kid (each is tried), or
                   only under ones whose extended key usage forbids this kind of entry
7. `malformed`     the signed CWT container does not follow the format: the claims map, iss, iat, exp
                   and hcert with its eu_dgc_v1 map, present and typed (what that map holds is for
                   the rules, below)
8. `revoked`       the kid, or the certificate's pseudonymous `sub`, is revoked in the trust list
9. `not-yet-valid` the signer certificate's notBefore, or the CWT's iat, is after now + `dcc.skew_s`
10. `expired`      now is after the signer certificate's notAfter, or at or after the CWT's exp, plus skew
11. `status`       the certificate fails the venue's rule set (`dcc_rules`, config `[dcc]`), including
                   an hcert with no single readable entry or no `ci`; which rule failed is health data
                   and is neither returned nor logged
12. `passback`     the same certificate was let in at this entrance within `gate.passback_s`
13. `ok`           accept, and the certificate's `sub` enters the passback window

A DCC's `sub` is `dcc.pseudonym(ci)`, a hash of the certificate identifier, never a name; `issuer` is the
CWT's `iss` country code; nothing else from the certificate leaves `_verify_dcc`. Several certificates
may share a kid: one under which the signature holds and that is within its validity wins.

Any other prefix is `unsupported` with scheme None. A `VC1:` venue code never opens the gate: its verdict
is always `deny`, with reason `ok` when it is genuine (signed by the fleet trust-root key) and names this
sentry's site, venue and entrance, `wrong-venue` when genuine but for another place, and
`unknown-key`, `bad-signature` or `malformed` otherwise; a genuine one carries its map in
`venue_code`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .codes import dcc, dcc_rules, es1, vc1
from .codes.trust import TrustList
from .config import Config, DccConfig, DeviceConfig, Es1Config, GateConfig
from .errors import CodeError, UnsupportedAlgorithmError
from .vocabulary import Reason, Verdict

log = logging.getLogger(__name__)

MAX_TEXT_BYTES = 4096

_SCHEMES_BY_PREFIX = {es1.PREFIX: "es1", vc1.PREFIX: "vc1", dcc.PREFIX: "dcc"}


def _scheme_of(text: str) -> str | None:
    """The scheme a prefix names; "HC" + a digit + ":" is the DCC family, whatever its version."""
    scheme = _SCHEMES_BY_PREFIX.get(text[:4])
    if scheme is None and text[:2] == "HC" and text[2:3].isdecimal() and text[3:4] == ":":
        return "dcc"
    return scheme


@dataclass(frozen=True, repr=False)
class Decision:
    """What the verifier concluded about one text, with the claims the gate and the event need.

    `sub` is the holder's pseudonym: it goes only into the sealed `subject` of a scan event, so the
    repr hides it and nothing here ever logs it.
    """

    verdict: str
    reason: str
    scheme: str | None = None
    kid: bytes | None = None
    iat: int | None = None
    exp: int | None = None
    issuer: str | None = None
    sub: bytes | None = None
    paper: bool = False
    venue_code: dict[str, Any] | None = None

    @property
    def accepted(self) -> bool:
        return self.verdict == Verdict.ACCEPT

    def __repr__(self) -> str:
        sub = "<hidden>" if self.sub is not None else "None"
        return (
            f"Decision(verdict={str(self.verdict)!r}, reason={str(self.reason)!r}, scheme={self.scheme!r}, "
            f"kid={self.kid!r}, iat={self.iat!r}, exp={self.exp!r}, issuer={self.issuer!r}, "
            f"sub={sub}, paper={self.paper!r}, venue_code={self.venue_code!r})"
        )

    __str__ = __repr__


class PassbackWindow:
    """Subjects let in recently at this entrance, forgotten after `window_s`; memory only.

    Entries are kept in arrival order so expiry only looks at the oldest; `max_entries` caps memory
    even if the clock stalls (the oldest are forgotten first, which only ever errs towards letting a
    long-gone holder back in). A clock that steps backwards keeps entries until it catches up.

    The window is a time waited at this entrance, not a calendar time: with a `clock` (the running
    sentry's is the monotonic one) that clock times it and the wall-clock `now` callers pass is
    ignored, so a wall clock stepped by hours neither forgets a holder nor keeps one out. Without
    one, `now` times it.
    """

    def __init__(
        self, window_s: float, max_entries: int = 10_000, *, clock: Callable[[], float] | None = None
    ) -> None:
        self.window_s = float(window_s)
        self.max_entries = max_entries
        self._clock = clock
        self._seen: OrderedDict[bytes, float] = OrderedDict()

    def _now(self, now: float) -> float:
        return now if self._clock is None else self._clock()

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        while self._seen:
            oldest = next(iter(self._seen.values()))
            if now - oldest < self.window_s:
                break
            self._seen.popitem(last=False)

    def seen(self, sub: bytes, now: float) -> bool:
        """True when `sub` was recorded less than `window_s` ago."""
        now = self._now(now)
        self._expire(now)
        when = self._seen.get(sub)
        return when is not None and abs(now - when) < self.window_s

    def forget(self, sub: bytes) -> None:
        """Take `sub` out again: it was accepted, but nobody was let in."""
        self._seen.pop(sub, None)

    def record(self, sub: bytes, now: float) -> None:
        """Remember that `sub` was let in at `now`."""
        if self.window_s <= 0:
            return
        now = self._now(now)
        self._seen.pop(sub, None)
        self._seen[sub] = now
        self._expire(now)
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)


class Verifier:
    """Decides on texts for one entrance, with the config's freshness rules and a trust list."""

    def __init__(
        self,
        es1: Es1Config,
        gate: GateConfig,
        device: DeviceConfig,
        trust: TrustList,
        root_key: Ed25519PublicKey | None = None,
        *,
        dcc: DccConfig | None = None,
        passback_clock: Callable[[], float] | None = None,
    ) -> None:
        self.es1 = es1
        self.dcc = dcc or DccConfig()
        self.gate = gate
        self.device = device
        self.trust = trust
        self.root_key = root_key
        self.passback = PassbackWindow(gate.passback_s, clock=passback_clock)

    @classmethod
    def from_config(
        cls,
        config: Config,
        trust: TrustList,
        root_key: Ed25519PublicKey | None = None,
        *,
        passback_clock: Callable[[], float] = time.monotonic,
    ) -> Verifier:
        """The verifier for one entrance with every section of `config` that rules a decision; its
        passback window waits on the monotonic clock (see `PassbackWindow`)."""
        return cls(
            config.es1, config.gate, config.device, trust, root_key, dcc=config.dcc,
            passback_clock=passback_clock,
        )  # fmt: skip

    def verify(self, text: str, now: float) -> Decision:
        """Decide on one decoded text at time `now` (seconds since 1970). Never raises."""
        scheme = None
        try:
            scheme = _scheme_of(text) if isinstance(text, str) else None
            if not isinstance(text, str) or _too_long(text):
                return Decision(Verdict.DENY, Reason.MALFORMED, scheme)
            if scheme == "es1":
                return self._verify_es1(text, now)
            if scheme == "vc1":
                return self._verify_vc1(text)
            if scheme == "dcc" and text.startswith(dcc.PREFIX):
                return self._verify_dcc(text, now)
            return Decision(Verdict.DENY, Reason.UNSUPPORTED, scheme)
        except Exception as exc:  # any surprise on hostile input is a denial, not a crash
            log.warning("verifier: %s input could not be read (%s)", scheme, type(exc).__name__)
            return Decision(Verdict.DENY, Reason.MALFORMED, scheme)

    def withdraw(self, decision: Decision) -> None:
        """An accepted code whose entry was refused (a policy, a secure fault): its holder was not
        let in, so the next try must not be taken for a passback."""
        if decision.accepted and decision.sub is not None:
            self.passback.forget(decision.sub)

    def record_assisted(self, decision: Decision, now: float) -> None:
        """Put an assisted grant's subject in the passback window (staff let a paper code in)."""
        if decision.sub is not None:
            self.passback.record(decision.sub, now)

    def _verify_es1(self, text: str, now: float) -> Decision:
        try:
            code = es1.parse(text)
        except CodeError:
            return Decision(Verdict.DENY, Reason.MALFORMED, "es1")
        key = self.trust.es1_key(code.kid)
        if key is None:
            return Decision(Verdict.DENY, Reason.UNKNOWN_KEY, "es1", code.kid)
        if not code.verify(key.public_key):
            return Decision(Verdict.DENY, Reason.BAD_SIGNATURE, "es1", code.kid)
        try:
            claims = code.unverified_claims()  # verified just above
        except CodeError:
            return Decision(Verdict.DENY, Reason.MALFORMED, "es1", code.kid)
        if claims.iss != key.issuer:
            # The issuer's name goes into the scan event: a key may only speak for its own.
            return Decision(Verdict.DENY, Reason.UNKNOWN_KEY, "es1", code.kid)

        granted = Decision(
            Verdict.ACCEPT, Reason.OK, "es1", code.kid, claims.iat, claims.exp, claims.iss, claims.sub,
            claims.paper,
        )  # fmt: skip

        def deny(reason: str) -> Decision:
            return dataclasses.replace(granted, verdict=Verdict.DENY, reason=reason)

        skew = self.es1.skew_s
        if self.trust.is_kid_revoked(code.kid) or self.trust.is_sub_revoked(claims.sub):
            return deny(Reason.REVOKED)
        if claims.iat - skew > now:
            return deny(Reason.NOT_YET_VALID)
        if now >= claims.exp + skew:
            return deny(Reason.EXPIRED)
        if not claims.paper and now - claims.iat > self.es1.max_age_s + skew:
            return deny(Reason.STALE)
        if claims.status not in self.es1.accept_status:
            return deny(Reason.STATUS)
        if claims.venue is not None and claims.venue != self.device.venue:
            return deny(Reason.WRONG_VENUE)
        if self.passback.seen(claims.sub, now):
            return deny(Reason.PASSBACK)
        if claims.paper:
            return deny(Reason.ASSIST)
        self.passback.record(claims.sub, now)
        return granted

    def _verify_dcc(self, text: str, now: float) -> Decision:
        rules = self.dcc
        if not rules.accept:
            return Decision(Verdict.DENY, Reason.UNSUPPORTED, "dcc")
        try:
            code = dcc.parse(text)
        except UnsupportedAlgorithmError:
            return Decision(Verdict.DENY, Reason.UNSUPPORTED, "dcc")
        except CodeError:
            return Decision(Verdict.DENY, Reason.MALFORMED, "dcc")
        candidates = self.trust.dcc_signers(code.kid)
        if not candidates:
            return Decision(Verdict.DENY, Reason.UNKNOWN_KEY, "dcc", code.kid)
        signers = [signer for signer in candidates if code.verify(signer)]
        if not signers:
            return Decision(Verdict.DENY, Reason.BAD_SIGNATURE, "dcc", code.kid)
        try:
            claims = code.unverified_claims()  # verified just above
        except CodeError:
            return Decision(Verdict.DENY, Reason.MALFORMED, "dcc", code.kid)
        # A certificate whose extended key usage excludes a kind the hcert names signed what it must
        # not sign: a test centre's key cannot vouch for a vaccination.
        signers = [signer for signer in signers if all(signer.may_sign(kind) for kind in claims.kinds)]
        if not signers:
            return Decision(Verdict.DENY, Reason.BAD_SIGNATURE, "dcc", code.kid)

        granted = Decision(
            Verdict.ACCEPT, Reason.OK, "dcc", code.kid, claims.iat, claims.exp, claims.iss, claims.sub
        )

        def deny(reason: str) -> Decision:
            return dataclasses.replace(granted, verdict=Verdict.DENY, reason=reason)

        skew = rules.skew_s
        sub_revoked = claims.sub is not None and self.trust.is_sub_revoked(claims.sub)
        if self.trust.is_kid_revoked(code.kid) or sub_revoked:
            return deny(Reason.REVOKED)
        signer = next((s for s in signers if s.not_before - skew <= now <= s.not_after + skew), signers[0])
        if signer.not_before - skew > now or claims.iat - skew > now:
            return deny(Reason.NOT_YET_VALID)
        if now > signer.not_after + skew or now >= claims.exp + skew:
            return deny(Reason.EXPIRED)
        if dcc_rules.evaluate_entry(claims.entry, rules, now) != dcc_rules.OK or claims.sub is None:
            return deny(Reason.STATUS)
        if self.passback.seen(claims.sub, now):
            return deny(Reason.PASSBACK)
        self.passback.record(claims.sub, now)
        return granted

    def _verify_vc1(self, text: str) -> Decision:
        reason, venue_code = vc1.verify(text, self.root_key)
        if venue_code is None:
            return Decision(Verdict.DENY, reason, "vc1")
        here = self.device
        if not venue_code.matches(site=here.site, venue=here.venue, entrance=here.entrance):
            reason = Reason.WRONG_VENUE
        return Decision(Verdict.DENY, reason, "vc1", venue_code=venue_code.as_dict())


def _too_long(text: str) -> bool:
    # Character count first: it bounds the byte count from below without encoding a huge string.
    return len(text) > MAX_TEXT_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_TEXT_BYTES
