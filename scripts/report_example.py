"""Draw docs/report-example.png: `fleet report --format png` of a demo database (one venue's day,
three entrances, a crowd peak in the evening, some denials), written through the store as the
ingester writes. Run: .venv/bin/python scripts/report_example.py [--out FILE]"""

from __future__ import annotations

import argparse
import math
import random
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_sentry.backend import report, report_chart  # noqa: E402
from edge_sentry.backend.decode import Record  # noqa: E402
from edge_sentry.backend.store import open_store  # noqa: E402

HOUR = 3_600_000
DAY_START = 1_795_046_400_000  # 2026-11-19T00:00Z
ENTRANCES = {"north": 1.0, "south": 0.6, "vip": 0.15}
DENY = {"expired": 8, "passback": 5, "revoked": 2, "bad-signature": 1, "wrong-venue": 3}


def demo(seed: int = 3) -> list[Record]:
    rng = random.Random(seed)
    out = []
    for hour in range(8, 20):
        crowd = 40 + 260 * math.exp(-((hour - 17.5) ** 2) / 3)  # doors open at 16:00, the show at 19:00
        for entrance, share in ENTRANCES.items():
            for _ in range(int(crowd * share * rng.uniform(0.85, 1.15))):
                deny = rng.random() < 0.06
                t = DAY_START + hour * HOUR + rng.randrange(HOUR)
                out.append(Record(
                    id=str(uuid.UUID(int=rng.getrandbits(128), version=4)), site="arena",
                    device=f"{entrance}-1", kind="scan", event="scan", seq=len(out) + 1, t_ms=t,
                    arrived_ms=t + 150, entrance=entrance, mode="scan",
                    verdict="deny" if deny else "accept",
                    reason=rng.choices(list(DENY), list(DENY.values()))[0] if deny else "ok"))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "report-example.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(str(Path(folder) / "fleet.sqlite3"))
        store.write(demo(), [], [], "demo")
        built = report.build(store, DAY_START + 8 * HOUR, DAY_START + 20 * HOUR)
        store.close()
    Path(args.out).write_bytes(report_chart.render(built))
    print(f"{args.out}: {Path(args.out).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
