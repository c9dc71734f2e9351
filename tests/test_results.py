"""The results table: schema, concurrent appends without lost or torn rows, supersede on read, bad rows."""

from __future__ import annotations

import math
import multiprocessing as mp
import time

import pytest

from ofactl.errors import OfactlError
from ofactl.results import COLUMNS, ResultRow, append_rows, read_results


def row(**kw) -> ResultRow:
    base = dict(model="m", task="ks", metric="accuracy", value=0.9, higher_is_better=True, lam=1.0,
                target_period_ms=90.0, measured_period_ms=91.2, n_utterances=10)
    base.update(kw)
    return ResultRow(**base)


def test_round_trip_and_columns(tmp_path):
    path = tmp_path / "r.csv"
    append_rows(path, [row(), row(task="pr", metric="per", value=0.3, higher_is_better=False, note="a, b\nc")])
    header = path.read_text().splitlines()[0].split(",")
    assert header == COLUMNS
    df = read_results(path)
    assert len(df) == 2 and set(df["task"]) == {"ks", "pr"}
    pr = df[df["task"] == "pr"].iloc[0]
    assert pr["value"] == 0.3 and not pr["higher_is_better"] and pr["note"] == "a, b c"
    assert df["lambda"].tolist() == [1.0, 1.0]


def test_infeasible_rows_keep_nan(tmp_path):
    path = tmp_path / "r.csv"
    append_rows(path, [row(task="pr", metric="per", value=math.nan, status="infeasible",
                           note="3 frames for 12 labels", higher_is_better=False)])
    df = read_results(path)
    assert df.iloc[0]["status"] == "infeasible" and math.isnan(df.iloc[0]["value"])


def test_rerun_supersedes_older_row(tmp_path):
    path = tmp_path / "r.csv"
    append_rows(path, [row(value=0.5)])
    time.sleep(0.01)
    append_rows(path, [row(value=0.7), row(seed=1, value=0.6)])
    df = read_results(path)
    assert sorted(df["value"].tolist()) == [0.6, 0.7]
    assert len(read_results(path, supersede=False)) == 3


def _writer(args):
    path, worker, n = args
    for i in range(n):
        append_rows(path, [row(model=f"w{worker}", seed=i, note="x" * 200)])


def test_eight_concurrent_writers_lose_and_tear_nothing(tmp_path):
    path = tmp_path / "r.csv"
    with mp.get_context("spawn").Pool(8) as pool:
        pool.map(_writer, [(str(path), w, 40) for w in range(8)])
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 8 * 40
    assert all(len(line.split(",")) == len(COLUMNS) for line in lines)
    df = read_results(path)
    assert len(df) == 320 and sorted(df.groupby("model").size().tolist()) == [40] * 8


def test_bad_rows_are_skipped_with_a_warning_and_bad_files_are_one_line(tmp_path):
    path = tmp_path / "r.csv"
    append_rows(path, [row()])
    with open(path, "a") as f:
        f.write("m,,ks,test,1.0,90,91,accuracy,notanumber,true,ok,,0,1,,,,2026,0.1,1\n")
        f.write("m,,ks,test,1.0,90,91,accuracy,0.5,true,weird,,0,1,,,,2026,0.1,1\n")
        f.write("torn,line\n")
    warnings = []
    df = read_results(path, warn=warnings.append)
    assert len(df) == 1 and warnings and "malformed" in warnings[0]
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(OfactlError, match="missing column"):
        read_results(tmp_path / "bad.csv")
    newer = tmp_path / "new.csv"
    append_rows(newer, [row(schema_version=99)])
    with pytest.raises(OfactlError, match="newer ofactl"):
        read_results(newer)
    with pytest.raises(OfactlError, match="not found"):
        read_results(tmp_path / "none.csv")


def test_layer_and_variant_are_part_of_the_key(tmp_path):
    """A layer-6 run and the last-layer run at one period are two measurements, as are two learned-lambda runs."""
    from ofactl.results import learned_variant

    path = tmp_path / "r.csv"
    append_rows(path, [row(layer="last", value=0.9), row(layer="6", value=0.7)])
    append_rows(path, [row(target_period_ms=None, lam=1.21, variant=learned_variant(0.4), value=0.8),
                       row(target_period_ms=None, lam=1.33, variant=learned_variant(1.6), value=0.85)])
    time.sleep(0.01)
    append_rows(path, [row(target_period_ms=None, lam=1.25, variant=learned_variant(0.4), value=0.82)])  # re-run
    df = read_results(path)
    assert sorted(df.loc[df["variant"] == "", "layer"]) == ["6", "last"]
    learned = df[df["variant"].str.startswith("learned")].set_index("variant")["value"].to_dict()
    assert learned == {"learned-init0.4": 0.82, "learned-init1.6": 0.85}


def test_precision_is_part_of_the_key_and_old_rows_read_as_fp32(tmp_path):
    path = tmp_path / "r.csv"
    append_rows(path, [row(value=0.9, precision="fp32"), row(value=0.89, precision="bf16")])
    df = read_results(path)
    assert sorted(zip(df["precision"], df["value"])) == [("bf16", 0.89), ("fp32", 0.9)]
    old = tmp_path / "old.csv"  # a table from before the column: its rows were all fp32
    text = path.read_text().splitlines()
    header = text[0].split(",")
    drop = header.index("precision")
    old.write_text("\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != drop) for line in text[:2]) + "\n")
    assert list(read_results(old)["precision"]) == ["fp32"]


def test_a_schema_1_table_is_read_and_upgraded_on_append(tmp_path):
    path = tmp_path / "old.csv"
    old_columns = [c for c in COLUMNS if c not in ("ci_low", "ci_high", "variant", "outcomes")]
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(old_columns)
    lines = [None]
    for model, note in (("m", ""), ("m+avgpool", ""), ("m", "learned lambda (init 0.5, lambda_max 2, rate penalty 0)")):
        values = {"model": model, "task": "ks", "split": "test", "lambda": "" if note else "1.0",
                  "target_period_ms": "" if note else "90.0", "measured_period_ms": "88.0", "metric": "accuracy",
                  "value": "0.8", "higher_is_better": "true", "status": "ok", "note": note, "seed": "0",
                  "created_at": f"2026-11-28T00:00:0{len(lines)}", "ofactl_version": "0.1.0", "schema_version": "1"}
        writer.writerow([values.get(c, "") for c in old_columns])
        lines.append(model)
    path.write_text(buf.getvalue())
    df = read_results(path)
    assert df["ci_low"].isna().all() and list(df["variant"]) == ["", "avgpool", "learned-init0.5"]
    append_rows(path, [row(model="new", ci_low=0.7, ci_high=0.9)])
    assert path.read_text().splitlines()[0].split(",") == COLUMNS
    df = read_results(path)
    assert len(df) == 4 and df["ci_low"].notna().sum() == 1
    assert set(df["schema_version"].astype(int)) == {1, 2}


def _pending_writer(args):
    path, w, n = args
    from ofactl.results import write_pending

    for i in range(n):
        write_pending(path, [row(model=f"w{w}", seed=i)])


def test_pending_rows_from_many_writers_are_read_before_and_after_the_merge(tmp_path):
    """Writers that share no lock (as jobs on several hosts over NFS) lose nothing; one merge moves all rows."""
    from ofactl.results import merge_pending, pending_dir

    path = tmp_path / "r.csv"
    append_rows(path, [row(model="first")])
    with mp.get_context("spawn").Pool(8) as pool:
        pool.map(_pending_writer, [(str(path), w, 25) for w in range(8)])
    assert len(list(pending_dir(path).glob("*.csv"))) == 200
    assert len(read_results(path)) == 201  # pending rows are part of the table before any merge
    assert merge_pending(path) == 200
    assert not list(pending_dir(path).glob("*.csv"))
    df = read_results(path)
    assert len(df) == 201 and sorted(df.groupby("model").size().tolist()) == [1] + [25] * 8
    assert len(path.read_text().splitlines()) == 202


def test_a_merge_killed_before_cleaning_up_duplicates_nothing(tmp_path):
    import subprocess
    import sys

    from ofactl.faults import ENV
    from ofactl.results import merge_pending, pending_dir, write_pending

    path = tmp_path / "r.csv"
    write_pending(path, [row(model="a"), row(model="b")])
    code = f"from ofactl.results import merge_pending; merge_pending({str(path)!r})"
    proc = subprocess.run([sys.executable, "-c", code], env={**__import__("os").environ, ENV: "results-merge"})
    assert proc.returncode == -9
    assert len(path.read_text().splitlines()) == 3 and len(list(pending_dir(path).glob("*.csv"))) == 1
    assert len(read_results(path, supersede=False)) == 2  # merged and still pending: read once
    merge_pending(path)  # the dead merger's lock is reclaimed (same host, process gone)
    assert len(read_results(path, supersede=False)) == 2 and not list(pending_dir(path).glob("*.csv"))


def test_a_held_lock_delays_the_merge_but_loses_nothing(tmp_path):
    from filelock import SoftFileLock

    from ofactl.results import merge_pending, pending_dir

    path = tmp_path / "r.csv"
    append_rows(path, [row(model="a")])
    with SoftFileLock(str(path) + ".merge-lock"):
        from ofactl.results import write_pending

        write_pending(path, [row(model="b")])
        assert merge_pending(path, timeout=0.2) == 0
        assert set(read_results(path)["model"]) == {"a", "b"}
    assert merge_pending(path) == 1 and not list(pending_dir(path).glob("*.csv"))
