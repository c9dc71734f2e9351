"""Argument errors come before torch is imported (issue 17 #13): each case runs the CLI in a fresh
interpreter and asserts the exact error line, exit code 2, and that ``torch`` was never imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ofactl.cli import precheck
from ofactl.errors import OfactlError

_RUN = (
    "import sys\n"
    "from ofactl.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "finally:\n"
    "    print('torch imported' if 'torch' in sys.modules else 'torch not imported', file=sys.stderr)\n"
)


def _cli(argv: list[str], cwd: Path) -> tuple[int, list[str]]:
    proc = subprocess.run([sys.executable, "-c", _RUN, *argv], capture_output=True, text=True, cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd)})
    return proc.returncode, proc.stderr.strip().splitlines()


CASES = {
    "extract: no input": (["extract", "--period", "90ms", "--model", "{model}", "/nonexistent", "o.h5"],
                          "error: input /nonexistent: no such file or folder"),
    "extract: period and lambda": (["extract", "--period", "90ms", "--lambda", "1", "{data}", "o.h5"],
                                   "error: give exactly one of --period and --lambda (found --period, --lambda)"),
    "extract: neither": (["extract", "{data}", "o.h5"], "error: give exactly one of --period and --lambda"),
    "extract: missing model": (["extract", "--period", "90ms", "--model", "/nonexistent", "{data}", "o.h5"],
                               "error: model directory /nonexistent (from --model) does not exist"),
    "extract: no model anywhere": (["extract", "--period", "90ms", "{data}", "o.h5"],
                                   "error: no model given (--model not set, $OFACTL_MODEL not set, no ofactl.toml in"),
    "extract: out is a folder": (["extract", "--period", "90ms", "--model", "{model}", "{data}", "{data}"],
                                 "error: OUT {data} is a folder, not a file"),
    "calibrate: no corpus": (["calibrate", "--model", "{model}", "/nonexistent"],
                             "error: corpus /nonexistent: no such file or folder"),
    "calibrate: missing model": (["calibrate", "--model", "/nonexistent", "{data}"],
                                 "error: model directory /nonexistent (from --model) does not exist"),
    "probe: missing model": (["probe", "--task", "ks", "--period", "90ms", "--model", "/nonexistent", "--data",
                              "{data}"], "error: model directory /nonexistent (from --model) does not exist"),
    "probe: no data": (["probe", "--task", "ks", "--period", "90ms", "--model", "{model}", "--data", "/nonexistent"],
                       "error: --data /nonexistent: no such file or folder"),
    "probe: unknown task": (["probe", "--task", "zz", "--period", "90ms"], "error: unknown task 'zz'"),
    "sweep: missing model": (["sweep", "--task", "ks", "--model", "/nonexistent", "--data", "{data}"],
                             "error: model directory /nonexistent (from --model) does not exist"),
    "profile: missing model": (["profile", "--model", "/nonexistent"],
                               "error: model directory /nonexistent (from --model) does not exist"),
    "pretrain: no config": (["pretrain", "--config", "/nonexistent.yaml"],
                            "error: config file /nonexistent.yaml not found"),
    "pretrain: no corpus": (["pretrain", "--teacher", "tiny-random", "--data", "/nonexistent"],
                            "error: training corpus /nonexistent: no such file or folder"),
    "pretrain: no teacher file": (["pretrain", "--teacher", "/nonexistent.pt", "--data", "{data}"],
                                  "error: teacher /nonexistent.pt: no such file or folder"),
    "segment: no corpus": (["segment", "/nonexistent", "--teacher", "tiny-random"],
                           "error: corpus /nonexistent: no such file or folder"),
    "teacher train: no corpus": (["teacher", "train", "/nonexistent", "--out", "t"],
                                 "error: corpus /nonexistent: no such file or folder"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_argument_errors_come_before_torch(name: str, tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.pt").write_bytes(b"")  # enough to be a model directory; never loaded
    data = tmp_path / "data"
    data.mkdir()
    argv, expected = CASES[name]
    argv = [a.format(model=model, data=data) for a in argv]
    rc, lines = _cli(argv, cwd=tmp_path)
    assert rc == 2, lines
    assert lines[0].startswith(expected.format(data=data)), lines
    assert lines[-1] == "torch not imported", lines


def test_cli_task_names_match_the_registry() -> None:
    from ofactl.task_names import TASK_NAMES
    from ofactl.tasks import TASKS

    assert tuple(TASKS) == TASK_NAMES


def test_output_file_refuses_an_unwritable_folder(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "new" / "deeper" / "out.h5"  # the nearest existing ancestor is tmp_path
    assert precheck.output_file(target) == target
    real_access = precheck.os.access
    monkeypatch.setattr(precheck.os, "access", lambda p, mode: False if Path(p) == tmp_path else real_access(p, mode))
    with pytest.raises(OfactlError, match=f"cannot write in {tmp_path}: permission denied or read-only"):
        precheck.output_file(target)


def test_one_of_names_what_was_given() -> None:
    assert precheck.one_of({"--period": None, "--lambda": 1.0}) == "--lambda"
    with pytest.raises(OfactlError, match=r"^give exactly one of --a, --b and --c$"):
        precheck.one_of({"--a": None, "--b": None, "--c": False})
    with pytest.raises(OfactlError, match=r"\(found --a, --c\)"):
        precheck.one_of({"--a": 1, "--b": None, "--c": True})
