"""Are two runs of the mini recipe the same?  python recipes/mini/compare_runs.py EXP_A EXP_B

Made for refactors: run the recipe (same settings and seeds) before and after
a change into two folders, then compare.  Checks, and prints one line each:

* the teacher's weights file and the guidance segments, byte for byte;
* every student's weights (exact bytes of every tensor; the checkpoint's
  metadata names the folder, so the file itself differs);
* every calibration table (all fields but time stamps, hashes and paths);
* the results table: every row, every column but ``created_at``,
  ``outcomes``, ``ofactl_version`` and ``model_sha256``.

Exit status 0 when everything is identical, 1 otherwise.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from ofactl.checkpoint import read_checkpoint
from ofactl.results import read_results
from ofactl.train import state_dict_digest

IGNORED_COLUMNS = ("created_at", "outcomes", "ofactl_version", "model_sha256")
IGNORED_CALIBRATION = ("created_at", "model_sha256", "data", "ofactl_version")


def _table(root: Path):
    df = read_results(root / "results.csv", supersede=False)
    df = df.drop(columns=[c for c in IGNORED_COLUMNS if c in df.columns]).astype(str)
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compare(a: Path, b: Path) -> list[tuple[str, bool]]:
    checks: list[tuple[str, bool]] = []
    for rel in ("teacher/teacher.pth", "segments.tsv"):
        checks.append((rel, (b / rel).is_file() and _digest(a / rel) == _digest(b / rel)))
    for model in sorted(p.parent for p in a.glob("*/model.pt")):
        other = b / model.name / "model.pt"
        same = other.is_file() and (state_dict_digest(read_checkpoint(model).state_dict)
                                    == state_dict_digest(read_checkpoint(other).state_dict))
        checks.append((f"{model.name} weights", same))
        cal_a, cal_b = model / "calibration.json", b / model.name / "calibration.json"
        if cal_a.is_file():
            x = json.loads(cal_a.read_text())
            y = json.loads(cal_b.read_text()) if cal_b.is_file() else {}
            checks.append((f"{model.name} calibration",
                           all(x[k] == y.get(k) for k in x if k not in IGNORED_CALIBRATION)))
    ta, tb = _table(a), _table(b)
    checks.append((f"results ({len(ta)} and {len(tb)} rows)", ta.shape == tb.shape and ta.equals(tb)))
    return checks


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    checks = compare(Path(sys.argv[1]), Path(sys.argv[2]))
    for name, same in checks:
        print(f"{'identical' if same else 'DIFFERENT'}  {name}")
    return 0 if all(same for _, same in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
