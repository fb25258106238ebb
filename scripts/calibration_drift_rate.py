"""How often `calibration_drift` would fire: from an `evaluate` run's evaluation.json and the
bundle's calibration.json, per family the episodes in which some decision's ``selfcheck``
exceeded every calibration value (the rule of ``Monitor.calibration_drift``), before and after
the shift's onset.

    .venv/bin/python scripts/calibration_drift_rate.py BUNDLE EVAL_DIR
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path


def main() -> None:
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        raise SystemExit(2)
    bundle, run = Path(sys.argv[1]), Path(sys.argv[2])
    ref = json.loads((bundle / "calibration.json").read_text())["world_model_reference"]
    bound = max(ref["selfcheck"])
    doc = json.loads((run / "evaluation.json").read_text())
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for ep in doc["episodes"]:
        checked = [d for d in ep["decisions"] if d.get("selfcheck") is not None]
        row = rows[ep["family"]]
        row[0] += 1
        row[1] += any(d["selfcheck"] > bound for d in checked if not d["post_onset"])
        row[2] += any(d["selfcheck"] > bound for d in checked if d["post_onset"])
    print(f"bound (max of {len(ref['selfcheck'])} calibration values): {bound:.4f}")
    print("| family | episodes | drift before onset | drift after onset |")
    print("|---|---|---|---|")
    for fam, (n, pre, post) in sorted(rows.items()):
        print(f"| {fam} | {n} | {pre} | {post if fam != 'in_distribution' else '—'} |")


if __name__ == "__main__":
    main()
