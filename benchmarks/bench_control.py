"""Signed control plane: what checking a signed command or a signed config costs.

Each figure is the best of several rounds of many calls, per message, on the same operator key:
- baseline: a bare Ed25519 verify of the same Sig_structure bytes (cryptography's, one call);
- command: `codes.control.verify` of a signed `pulse-gate` (COSE decode, header checks, trust-list
  lookup, the Ed25519 verify, payload decode, role, scope and aud) plus the freshness and deadline
  checks;
- config: `codes.control.verify` of a signed desired config with a few sections, plus its version
  bound;
- command through the guard: `link.control.ControlGuard` as the sentry runs it, including keeping the
  jti in the state store (an fsync'd write), which is what a command really costs.
Ratios are against the baseline of the same run. These checks run on the link's handler thread when
a control message arrives, never on the frame -> relay hot path.

Run: .venv/bin/python benchmarks/bench_control.py [--calls N] [--rounds N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_sentry.codes import control, cose, keys  # noqa: E402
from edge_sentry.codes.trust import TrustList  # noqa: E402
from edge_sentry.link.control import ControlGuard  # noqa: E402
from edge_sentry.link.topics import Topics  # noqa: E402
from edge_sentry.state import Identity, StateStore  # noqa: E402

TOPICS = Topics("arena", "gate-1")
CONFIG = {
    "gate": {"pulse_ms": 700, "passback_s": 20},
    "es1": {"max_age_s": 45, "skew_s": 20, "accept_status": [0, 1]},
    "dcc": {"accept": ["vaccination", "test"], "test_max_age_h": 24},
}


def best_us(work: Callable[[], object], calls: int, rounds: int) -> float:
    """Microseconds per call, best round."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            work()
        best = min(best, (time.perf_counter() - start) / calls * 1e6)
    return best


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    operator = keys.generate()
    entry = keys.operator_entry(operator, "bench", ["config", "command"], ["arena"])
    trust = TrustList.from_mapping(
        {"version": 1, "issued": "2026-11-26T00:00:00Z", "keys": [], "operators": [entry]}
    )
    now_ms = int(time.time() * 1000)
    command = control.sign(operator, TOPICS.cmd("pulse-gate"), {"deadline": now_ms + 30_000}, iat_ms=now_ms)
    desired = control.sign(operator, TOPICS.config_desired, {"version": 7, "config": CONFIG}, iat_ms=now_ms)
    message = cose.decode_sign1(command)
    signed_bytes = cose.sig_structure(message.protected, message.payload)
    public = operator.public_key()

    def bare() -> None:
        public.verify(message.signature, signed_bytes)

    def verify_command() -> None:
        found = control.verify(command, trust.operator, topic=TOPICS.cmd("pulse-gate"), site="arena",
                               role="command")  # fmt: skip
        control.check_fresh(found, now_ms=now_ms, skew_s=30)
        control.check_deadline(found, now_ms + 30_000, max_deadline_s=300)

    def verify_config() -> None:
        found = control.verify(
            desired, trust.operator, topic=TOPICS.config_desired, site="arena", role="config"
        )
        control.check_config_version(found)

    with (
        tempfile.TemporaryDirectory() as folder,
        StateStore(Path(folder), Identity("arena", "gate-1")) as store,
    ):
        guard = ControlGuard(TOPICS, lambda: trust, store, record=lambda event: None)
        fresh = [
            control.sign(operator, TOPICS.cmd("pulse-gate"), {"deadline": now_ms + 300_000}, iat_ms=now_ms)
            for _ in range(args.calls * args.rounds)
        ]
        queue = iter(fresh)

        def through_guard() -> None:
            found = guard.command(TOPICS.cmd("pulse-gate"), next(queue), retained=False)
            guard.admit(TOPICS.cmd("pulse-gate"), found, now_ms + 300_000)

        figures = [
            ("bare Ed25519 verify (baseline)", best_us(bare, args.calls, args.rounds)),
            ("signed command: verify + fresh + deadline", best_us(verify_command, args.calls, args.rounds)),
            ("signed config: verify + version", best_us(verify_config, args.calls, args.rounds)),
        ]
        guarded_calls = max(1, args.calls // 10)
        figures.append(("command through the guard (jti kept on disk)",
                        best_us(through_guard, guarded_calls, args.rounds)))  # fmt: skip

    base = figures[0][1]
    print(f"signed control messages: {len(command)} B command, {len(desired)} B config; "
          f"{args.rounds} rounds, best round per figure")  # fmt: skip
    for name, us in figures:
        print(f"  {name:<46} {us:9.1f} us   {us / base:5.2f}x baseline")
    print("These run on the link's handler thread when a control message arrives,")
    print("never on the frame -> relay hot path.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
