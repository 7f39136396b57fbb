"""The health authority's trace: scans opened per second, from a SQLite back end, beside pyhpke's bare open.

A trace opens every sealed subject of its window (one HPKE open each, nothing else links them), so its
cost is that of the opens plus reading the rows and matching visits. The ratio printed is the whole
trace's time per scan over the bare open's, measured in one run so machine speed cancels out; the
target is that the trace adds at most half again to the opens it cannot avoid.

Run: .venv/bin/python benchmarks/bench_trace.py [SCANS]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from pyhpke import KEMKey

from edge_sentry import privacy, tracing
from edge_sentry.backend.decode import Record, subject_bytes
from edge_sentry.backend.reader import open_reader
from edge_sentry.backend.store import open_store

T0 = 1_795_000_000_000
TARGET_RATIO = 1.5


def main(count: int) -> int:
    key = X25519PrivateKey.generate()
    sealer = privacy.Sealer(key.public_key())
    records, bare = [], []
    for i in range(count):
        t = T0 + i * 1000
        entrance = ("north", "south")[i % 2]
        event = {"site": "arena", "device": "gate-1", "entrance": entrance, "t": t}
        sub = (i % 500).to_bytes(16, "big")
        sealed = sealer.seal(sub, event)
        bare.append((sealed["enc"], sealed["ct"], privacy.context_aad(event)))
        records.append(Record(id=f"00000000-0000-7000-8000-{i:012x}", site="arena", device="gate-1",
                              kind="scan", event="scan", seq=i + 1, t_ms=t, arrived_ms=t,
                              entrance=entrance, mode="scan", verdict="accept", reason="ok",
                              subject=subject_bytes(sealed)))
    with tempfile.TemporaryDirectory() as folder:
        url = str(Path(folder) / "fleet.sqlite3")
        store = open_store(url)
        store.write(records, [], [], "bench")
        store.close()

        recipient = KEMKey.from_pyca_cryptography_key(key)
        start = time.perf_counter()
        for enc, ct, aad in bare:
            privacy.SUITE.create_recipient_context(enc, recipient, info=privacy.INFO).open(ct, aad=aad)
        bare_s = time.perf_counter() - start

        reader = open_reader(url)
        start = time.perf_counter()
        trace = tracing.Trace((0).to_bytes(16, "big"), T0, T0 + count * 1000, 30 * tracing.MINUTE_MS)
        trace.total = reader.count(T0, T0 + count * 1000)
        tracing.find(trace, tracing.open_all(reader.scans(T0, T0 + count * 1000), key, trace))
        trace_s = time.perf_counter() - start
        reader.close()
    assert trace.opened == count and not trace.failed
    ratio = trace_s / bare_s
    print(f"scans: {count}, visits found: {len(trace.visits)}")
    print(f"bare HPKE open:  {count / bare_s:8.0f} per s  ({bare_s / count * 1e6:.0f} us each)")
    print(f"whole trace:     {count / trace_s:8.0f} per s  ({trace_s / count * 1e6:.0f} us each)")
    ok = ratio <= TARGET_RATIO
    print(f"trace / bare open: {ratio:.2f}  (target <= {TARGET_RATIO}: {'ok' if ok else 'FAILED'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000))
