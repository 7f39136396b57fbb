"""ES1 verification cost per code, beside the bare Ed25519 signature check it cannot avoid.

The verifier runs on the hot path once per new code in view. Everything it adds around the signature
(Base45, two strict CBOR decodes, trust lookup, the rules, passback) should cost a small multiple of
`cryptography`'s own Ed25519 verify over the same key and message; the ratio printed here is that
multiple, measured in one run so machine speed cancels out.

Run: .venv/bin/python benchmarks/bench_verify.py [ROUNDS]
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_sentry.codes import base45, cose, es1, keys
from edge_sentry.codes.trust import TrustList
from edge_sentry.config import DeviceConfig, Es1Config, GateConfig
from edge_sentry.verifier import Verifier


def _percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return p50 / 1000, p99 / 1000


def _time_interleaved(
    a: Callable[[], object], b: Callable[[], object], rounds: int
) -> tuple[list[int], list[int]]:
    """Alternate the two calls so both see the same CPU frequency, cache and scheduler noise."""
    times_a: list[int] = []
    times_b: list[int] = []
    clock = time.perf_counter_ns
    for _ in range(min(200, rounds)):  # warm-up
        a()
        b()
    gc.disable()
    try:
        for _ in range(rounds):
            t0 = clock()
            a()
            t1 = clock()
            b()
            t2 = clock()
            times_a.append(t1 - t0)
            times_b.append(t2 - t1)
    finally:
        gc.enable()
    return times_a, times_b


def main(rounds: int = 5000) -> int:
    key = keys.generate()
    now = int(time.time())
    text = es1.issue(key, issuer="bench", lifetime_s=60, iat=now)
    trust = TrustList.from_mapping(
        {"version": 1, "issued": "2026-01-01T00:00:00Z", "keys": [keys.trust_entry(key, "bench")]}
    )
    # passback off: the same code is verified over and over and must take the accept path each time
    verifier = Verifier(Es1Config(), GateConfig(passback_s=0), DeviceConfig(), trust)
    if verifier.verify(text, now).verdict != "accept":
        print("bench_verify: the benchmark code was not accepted", file=sys.stderr)
        return 1

    message = cose.decode_sign1(base45.decode(text[len(es1.PREFIX) :]))
    signed_bytes = cose.sig_structure(message.protected, message.payload)
    public_key = key.public_key()

    full, bare = _time_interleaved(
        lambda: verifier.verify(text, now),
        lambda: public_key.verify(message.signature, signed_bytes),
        rounds,
    )
    junk = "ES1:" + "0" * 4000
    rejected, _ = _time_interleaved(lambda: verifier.verify(junk, now), lambda: None, rounds)

    full_p50, full_p99 = _percentiles(full)
    bare_p50, bare_p99 = _percentiles(bare)
    junk_p50, junk_p99 = _percentiles(rejected)
    print(f"ES1 code: {len(text)} characters, {rounds} rounds")
    print(f"{'':30} {'p50 µs':>9} {'p99 µs':>9}")
    print(f"{'verifier.verify (accept)':30} {full_p50:9.1f} {full_p99:9.1f}")
    print(f"{'bare Ed25519 verify':30} {bare_p50:9.1f} {bare_p99:9.1f}")
    print(f"{'ratio':30} {full_p50 / bare_p50:9.2f} {full_p99 / bare_p99:9.2f}")
    print(f"{'4 KB junk text (malformed)':30} {junk_p50:9.1f} {junk_p99:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
