"""ofactl plot: every panel type from hand-made results tables, --table, --pareto, bad input, calibrate --plot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import matplotlib.colors as mcolors
import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.text import Text
from typer.testing import CliRunner

from ofactl.calibrate import Calibration, build_calibration
from ofactl.checkpoint import save_model
from ofactl.cli import app, main
from ofactl.errors import OfactlError
from ofactl.model import OFAStudent, StudentConfig
from ofactl.plot import OKABE_ITO, classify_models, pareto_front, pivot_results, plot_calibration, plot_results
from ofactl.results import COLUMNS, ResultRow, append_rows, read_results
from ofactl.workspace import MODEL_ENV_VAR

runner = CliRunner()
NAN = float("nan")
KS = {20: 0.962, 40: 0.958, 90: 0.951, 320: 0.93, 960: 0.918}
PR = {20: 0.165, 40: 0.18, 90: 0.27}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    monkeypatch.delenv("OFACTL_DEBUG", raising=False)


def row(model, task, metric, value, period, hib, **kw) -> ResultRow:
    kw.setdefault("measured_period_ms", None if period is None else period * 1.02)
    return ResultRow(model=model, task=task, metric=metric, value=value, higher_is_better=hib,
                     target_period_ms=period, **kw)


def realistic_rows() -> list[ResultRow]:
    rows = []
    for p, v in KS.items():
        for seed in (0, 1):  # two seeds, averaged in the figure
            rows.append(row("ofa", "ks", "accuracy", v + 0.004 * seed, p, True, seed=seed, macs_per_second=2.5e9 + 2e10 / p))
        rows.append(row("ofa-short", "ks", "accuracy", v - 0.01, p, True)) if p <= 90 else None
    for p in (20, 40, 90, 320, 960):
        if p in PR:
            rows.append(row("ofa", "pr", "per", PR[p], p, False, macs_per_second=2.5e9 + 2e10 / p))
        else:
            rows.append(row("ofa", "pr", "per", NAN, p, False, status="infeasible", note="CTC: more labels than frames"))
    rows.append(row("ofa", "ks", "accuracy", NAN, 640, True, status="failed", note="out of memory"))
    rows.append(row("DistilHuBERT", "ks", "accuracy", 0.9598, 20, True, variant="baseline", macs_per_second=3.56e9))
    rows.append(row("DistilHuBERT", "pr", "per", 0.1627, 20, False, variant="baseline", macs_per_second=3.56e9))
    rows.append(row("Meng2022", "ks", "accuracy", 0.94, 90, True, variant="previous", note="Table 2",
                    macs_per_second=2.8e9))
    rows.append(row("fixed90", "pr", "per", 0.2, 90, False, macs_per_second=2.8e9))  # one period: a baseline
    return rows


@pytest.fixture()
def results(tmp_path: Path) -> Path:
    path = tmp_path / "results.csv"
    append_rows(path, realistic_rows())
    return path


def lines_by_gid(ax) -> dict[str, object]:
    return {line.get_gid(): line for line in ax.get_lines() if line.get_gid()}


def legend_texts(fig) -> list[str]:
    assert len(fig.legends) == 1
    return [t.get_text() for t in fig.legends[0].get_texts()]


# ----------------------------------------------------------------------------- panels


def test_period_panels(results: Path) -> None:
    fig = plot_results(results)
    assert [ax.get_title() for ax in fig.axes] == ["PR (phoneme recognition)", "KS (keyword spotting)"]
    pr, ks = fig.axes
    assert pr.get_xscale() == "linear" and ks.get_xscale() == "log"  # log x for KS, IC, SID, ER (the paper)
    assert pr.get_yscale() == ks.get_yscale() == "linear"
    assert pr.get_xlabel() == ks.get_xlabel() == "frame period (ms)"
    assert pr.get_ylabel() == "PER (%)\n(lower is better)"
    assert ks.get_ylabel() == "accuracy (%)\n(higher is better)"

    ks_lines = lines_by_gid(ks)
    assert set(ks_lines) == {"ofa:ofa", "ofa:ofa-short", "baseline:DistilHuBERT", "previous:Meng2022", "failed:ofa"}
    ofa = ks_lines["ofa:ofa"]
    assert ofa.get_linestyle() == "-" and ofa.get_marker() == "o"
    np.testing.assert_allclose(ofa.get_xdata(), [p * 1.02 for p in KS])  # measured periods
    np.testing.assert_allclose(ofa.get_ydata(), [100 * v + 0.2 for v in KS.values()])  # percent, seeds averaged
    assert len(ks_lines["ofa:ofa-short"].get_xdata()) == 3
    baseline, previous = ks_lines["baseline:DistilHuBERT"], ks_lines["previous:Meng2022"]
    assert (baseline.get_marker(), baseline.get_linestyle()) == ("x", "None")
    assert (previous.get_marker(), previous.get_linestyle()) == ("+", "None")
    pr_lines = lines_by_gid(pr)
    assert set(pr_lines) == {"ofa:ofa", "baseline:DistilHuBERT", "baseline:fixed90", "infeasible:ofa"}

    assert legend_texts(fig) == ["ofa", "ofa-short", "DistilHuBERT (baseline)", "fixed90 (baseline)",
                                 "Meng2022 (previous work)", "infeasible (on the axis edge)", "failed"]
    colours = {mcolors.to_hex(line.get_color()) for ax in fig.axes for line in ax.get_lines()}
    assert colours <= {c.lower() for c in OKABE_ITO}
    assert fig.get_size_inches()[0] == pytest.approx(2 * 3.3)


def test_infeasible_and_failed_points_sit_on_the_worst_edge(results: Path) -> None:
    fig = plot_results(results)
    pr, ks = fig.axes
    infeasible = lines_by_gid(pr)["infeasible:ofa"]
    np.testing.assert_allclose(infeasible.get_xdata(), [320 * 1.02, 960 * 1.02])
    assert list(infeasible.get_ydata()) == [1.0, 1.0]  # top edge (axes coordinates): PER is lower-is-better
    fig.canvas.draw()
    top = infeasible.get_transform().transform([[500.0, 1.0]])[0, 1]  # blended: x in data, y in axes coordinates
    assert top == pytest.approx(pr.bbox.y1)
    assert infeasible.get_marker() == "X" and infeasible.get_markerfacecolor() == "none"
    assert infeasible.get_clip_on() is False
    failed = lines_by_gid(ks)["failed:ofa"]
    np.testing.assert_allclose(failed.get_xdata(), [640 * 1.02])
    assert list(failed.get_ydata()) == [0.0]  # bottom edge: accuracy is higher-is-better
    # The x axis reaches the infeasible points; the y axis only the values.
    assert pr.get_xlim()[1] >= 960 * 1.02
    assert pr.get_ylim()[1] < 40


def test_x_macs_and_the_profile_fallback(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    rows = [row("ofa", "ks", "accuracy", v, p, True) for p, v in KS.items()]  # no macs_per_second
    rows += [row("ofa", "profile", "macs_per_s", 2.5e9 + 2e10 / p, p, False, split="") for p in (20, 960)]
    rows += [row("lonely", "ks", "accuracy", 0.9, 20, True, note="baseline")]  # no MACs anywhere
    append_rows(path, rows)
    warnings: list[str] = []
    fig = plot_results(path, x="macs", warn=warnings.append)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "compute (GMAC per second of audio)" and ax.get_xscale() == "linear"
    x = lines_by_gid(ax)["ofa:ofa"].get_xdata()
    assert x[0] == pytest.approx(2.5 + 20 / 960, rel=1e-3) and x[-1] == pytest.approx(3.5, rel=1e-3)
    assert len(x) == 5 and np.all(np.diff(x) > 0)  # interpolated log-log between the two profile rows
    y = lines_by_gid(ax)["ofa:ofa"].get_ydata()
    np.testing.assert_allclose(y, [100 * v for v in reversed(KS.values())])  # fewer MACs: longer period, lower accuracy
    warnings = [w for w in warnings if "confidence intervals" not in w]  # these rows have none
    assert len(warnings) == 1 and "lonely" in warnings[0] and "MACs" in warnings[0]
    assert "baseline:lonely" not in lines_by_gid(ax)


def test_profile_panels(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    rows = []
    for p in (20, 90, 960):
        rows += [row("m", "profile", "macs_per_s", 2.5e9 + 2e10 / p, p, False, split=""),
                 row("m", "profile", "throughput_b1", 100.0 + p, p, True, split=""),
                 row("m", "profile", "throughput_b8", 400.0 + p, p, True, split="")]
    append_rows(path, rows)
    fig = plot_results(path)  # only profile rows: they are drawn
    assert [ax.get_title() for ax in fig.axes] == ["compute profile: MACs", "compute profile: throughput, batch 1",
                                                   "compute profile: throughput, batch 8"]
    assert fig.axes[0].get_ylabel() == "MACs (GMAC per s of audio)\n(lower is better)"
    assert fig.axes[1].get_ylabel() == "throughput, batch 1 (audio s per s)\n(higher is better)"
    np.testing.assert_allclose(lines_by_gid(fig.axes[0])["ofa:m"].get_ydata(), [3.5, 2.5 + 20 / 90, 2.5 + 20 / 960])
    assert all(ax.get_xscale() == "log" for ax in fig.axes)
    assert legend_texts(fig) == ["m"]


def test_pareto_frontier(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    append_rows(path, [
        row("a", "ic", "accuracy", 0.95, 20, True), row("a", "ic", "accuracy", 0.90, 90, True),
        row("a", "ic", "accuracy", 0.70, 960, True),
        row("b", "ic", "accuracy", 0.94, 20, True), row("b", "ic", "accuracy", 0.92, 90, True),
        row("b", "ic", "accuracy", 0.60, 960, True),
    ])
    fig = plot_results(path, pareto=True)
    (ax,) = fig.axes
    front = lines_by_gid(ax)["pareto"]
    np.testing.assert_allclose(front.get_xdata(), [20 * 1.02, 90 * 1.02, 960 * 1.02])
    np.testing.assert_allclose(front.get_ydata(), [95.0, 92.0, 70.0])
    assert "Pareto frontier" in legend_texts(fig)
    assert "pareto" not in lines_by_gid(plot_results(path).axes[0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 20), st.integers(0, 20)), min_size=1, max_size=12),
       st.booleans(), st.booleans())
def test_pareto_front_property(points, larger_x_cheaper, higher_is_better) -> None:
    x = [float(p[0]) for p in points]
    y = [float(p[1]) for p in points]
    front = pareto_front(x, y, cheaper_is_larger_x=larger_x_cheaper, higher_is_better=higher_is_better)
    cost = [-v if larger_x_cheaper else v for v in x]
    good = [v if higher_is_better else -v for v in y]

    def beats(j, i):
        return cost[j] <= cost[i] and good[j] >= good[i] and (cost[j] < cost[i] or good[j] > good[i])

    assert front == sorted(front, key=lambda i: (x[i], y[i]))
    for i in range(len(x)):
        dominated = any(beats(j, i) for j in range(len(x)))
        assert (i in front) == (not dominated)


def test_fonts_and_size_fit_a_paper_column(results: Path, tmp_path: Path) -> None:
    fig = plot_results(results, pareto=True)
    fig.canvas.draw()
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    assert sizes and min(sizes) >= 7
    width, height = fig.get_size_inches()
    assert width / 2 == pytest.approx(3.3) and height < 4
    for suffix in (".png", ".pdf", ".svg"):
        out = tmp_path / f"fig{suffix}"
        fig.savefig(out)
        assert out.stat().st_size > 1000


def test_classify_models_rule(results: Path) -> None:
    kinds = classify_models(read_results(results))
    assert kinds == {"DistilHuBERT": "baseline", "Meng2022": "previous", "fixed90": "baseline", "ofa": "ofa",
                     "ofa-short": "ofa"}


def test_kinds_come_from_the_variant_not_the_note(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    rows = [row("ofa", "ks", "accuracy", 0.9 - p / 1e4, p, True, note="better than the previous baseline")
            for p in (20, 90, 320)]
    rows.append(row("paper", "ks", "accuracy", 0.94, 90, True, variant="previous"))
    append_rows(path, rows)
    assert classify_models(read_results(path)) == {"ofa": "ofa", "paper": "previous"}
    # rows typed by hand (no schema_version) before the variant column: their note still says what they are
    header = path.read_text().splitlines()[0].split(",")
    legacy = dict.fromkeys(header, "")
    legacy.update(model="old", task="ks", metric="accuracy", value="0.93", higher_is_better="true", split="test",
                  status="ok", note="prior work (Table 3)", target_period_ms="90", seed="0", n_utterances="0")
    legacy_baseline = {**legacy, "model": "fixed", "note": "a baseline", "value": "0.92"}
    with path.open("a") as f:
        for r in (legacy, legacy_baseline):
            f.write(",".join(r[c] for c in header) + "\n")
    df = read_results(path)
    assert classify_models(df) == {"ofa": "ofa", "paper": "previous", "old": "previous", "fixed": "baseline"}
    assert set(df.loc[df["model"] == "ofa", "variant"]) == {""}  # ofactl's own rows: the note is never read


def test_pivot_table(results: Path) -> None:
    tables = pivot_results(results)
    assert list(tables) == [("pr", "per"), ("ks", "accuracy")]
    pr = tables[("pr", "per")]
    assert list(pr.columns) == ["20ms", "40ms", "90ms", "320ms", "960ms"]
    assert pr.loc["ofa", "320ms"] == "infeasible" and pr.loc["ofa", "20ms"] == "16.5"
    assert pr.loc["DistilHuBERT", "40ms"] == "" and pr.attrs["unit"] == "%"
    assert tables[("ks", "accuracy")].loc["ofa", "640ms"] == "failed"


# ----------------------------------------------------------------------------- CLI


def test_cli_writes_the_figure(results: Path, tmp_path: Path) -> None:
    out = tmp_path / "figs" / "tradeoff.pdf"
    result = runner.invoke(app, ["plot", str(results), "-o", str(out), "--pareto", "--tasks", "ks"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF")
    assert result.stdout.strip() == f"wrote {out} (1 panel: KS (keyword spotting))"
    default = runner.invoke(app, ["plot", str(results), "--models", "ofa,DistilHuBERT"])
    assert default.exit_code == 0, default.output
    assert results.with_suffix(".png").read_bytes().startswith(b"\x89PNG")


def test_cli_table(results: Path) -> None:
    result = runner.invoke(app, ["plot", str(results), "--table"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for expected in ("PR (phoneme recognition): PER (%), lower is better", "KS (keyword spotting): accuracy (%)",
                     "infeasible", "failed", "95.98", "16.27", "Meng2022", "960ms"):
        assert expected in out, expected
    assert not results.with_suffix(".png").exists()


def run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(argv)
    out, err = capsys.readouterr()
    return (0 if info.value.code is None else int(info.value.code)), out, err


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    return path


def rewrite_column(path: Path, column: str, value: str, where=lambda i: True) -> None:
    lines = path.read_text().splitlines()
    index = lines[0].split(",").index(column)
    out = [lines[0]]
    for i, line in enumerate(lines[1:]):
        cells = line.split(",")
        if where(i):
            cells[index] = value
        out.append(",".join(cells))
    path.write_text("\n".join(out) + "\n")


def test_bad_input_is_one_error_line(results: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    newer = tmp_path / "newer.csv"
    newer.write_text(results.read_text())
    rewrite_column(newer, "schema_version", "99")
    cases = [
        ([str(write_csv(tmp_path / "cols.csv", ["model", "task", "value"], [["a", "ks", "0.9"]]))], "missing column(s)"),
        ([str(results), "--tasks", "foo"], "unknown task(s) foo"),
        ([str(results), "--tasks", "sid"], "no rows for task(s) sid"),
        ([str(results), "--models", "nope"], "no rows for model(s) nope"),
        ([str(results), "-o", str(tmp_path / "f.jpg")], "unknown suffix '.jpg'"),
        ([str(results), "--x", "lambda"], "--x must be period or macs"),
        ([str(tmp_path / "missing.csv")], "not found"),
        ([str(newer)], "newer ofactl"),
    ]
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00garbage\x00" * 50)
    cases.append(([str(binary)], ""))
    for argv, message in cases:
        code, out, err = run_main(["plot", *argv], capsys)
        lines = err.strip().splitlines()
        assert code == 2, (argv, err)
        assert lines[0].startswith("error: ") and message in lines[0], (argv, err)
        assert len(lines) <= 2 and "Traceback" not in err, err
        assert out == ""
    assert not (tmp_path / "f.jpg").exists()


def test_bad_rows_are_skipped_with_a_warning(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # An unknown task, an 'ok' row with a NaN value: skipped, the rest drawn (older schemas are read as they are).
    append_rows(results, [row("nowhere", "ks", "accuracy", 0.5, None, True),
                          row("ofa", "foo", "accuracy", 0.5, 90, True), row("broken", "ks", "accuracy", 0.5, 90, True)])
    n = len(results.read_text().splitlines()) - 1
    rewrite_column(results, "schema_version", "1", where=lambda i: i == 0)
    rewrite_column(results, "value", "nan", where=lambda i: i == n - 1)
    code, out, err = run_main(["plot", str(results), "-o", str(results.with_suffix(".svg"))], capsys)
    assert code == 0, err
    assert "wrote" in out and results.with_suffix(".svg").exists()
    assert "skipped 1 malformed row(s)" in err
    assert "skipped 1 row(s) of unknown task(s) 'foo'" in err
    assert "older ofactl" not in err
    assert "skipped 1 row(s) without a frame period (measured_period_ms and target_period_ms are empty): model(s) nowhere" in err
    assert "Traceback" not in err


def test_only_bad_rows_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nan.csv"
    append_rows(path, [row("ofa", "ks", "accuracy", 0.9, 20, True)])
    rewrite_column(path, "value", "nan")
    code, _, err = run_main(["plot", str(path)], capsys)
    assert code == 2
    assert "warning: " in err and "error: the results table has no rows to plot" in err
    assert "Traceback" not in err


def test_bad_input_through_the_console_script(tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "bad.csv", ["model", "task"], [["a", "ks"]])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("OFACTL_DEBUG", None)
    result = subprocess.run([sys.executable, "-m", "ofactl", "plot", str(bad)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and "missing column(s)" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 2


def test_header_has_every_column(results: Path) -> None:
    assert results.read_text().splitlines()[0].split(",") == COLUMNS


# ----------------------------------------------------------------------------- calibration


def calibration() -> Calibration:
    rng = np.random.default_rng(0)
    alphas = [torch.from_numpy(rng.uniform(0.1, 0.5, size=int(n))) for n in rng.integers(50, 300, size=60)]
    return build_calibration([0.02 * len(a) for a in alphas], alphas, data="/data/LibriSpeech", split="dev-clean")


def test_plot_calibration() -> None:
    cal = calibration()
    fig = plot_calibration(cal)
    (ax,) = fig.axes
    assert ax.get_yscale() == "log" and ax.get_xscale() == "linear"
    assert ax.get_xlabel() == "lambda" and ax.get_ylabel() == "measured frame period (ms)"
    assert len(ax.collections) == 1  # the p10-p90 band
    band = ax.collections[0].get_paths()[0].vertices
    assert band[:, 1].min() >= min(v for v in cal.p10_ms if v is not None) - 1e-9
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "p10–p90 of utterances", "median utterance", "dataset (audio / frames)"]
    dataset = [line for line in ax.get_lines() if line.get_label() == "dataset (audio / frames)"][0]
    np.testing.assert_allclose(dataset.get_ydata(), cal.period_ms)
    assert ax.get_title() == f"LibriSpeech dev-clean\ncalibrated {cal.range_text()}, 60 utterances"


def test_calibrate_cli_plot(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model_dir = save_model(tmp_path / "m", OFAStudent(StudentConfig.preset("tiny")))
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        sf.write(wavs / f"u{i}.wav", (0.1 * rng.standard_normal(8000 + 4000 * i)).astype("float32"), 16000)
    bad = runner.invoke(app, ["calibrate", str(wavs), "--model", str(model_dir), "--plot", str(tmp_path / "c.gif")])
    assert bad.exit_code != 0 and isinstance(bad.exception, OfactlError) and "unknown suffix" in str(bad.exception)
    assert not (model_dir / "calibration.json").exists()  # refused before measuring
    out = tmp_path / "cal.png"
    result = runner.invoke(app, ["calibrate", str(wavs), "--model", str(model_dir), "--plot", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"\x89PNG") and f"wrote {out}" in result.stdout


def test_learned_lambda_rows_get_their_own_star(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    rows = [row("ofa", "ic", "accuracy", v, p, True) for p, v in ((20, 0.9), (90, 0.85), (320, 0.7))]
    rows.append(row("ofa", "ic", "accuracy", 0.88, None, True, lam=0.7, measured_period_ms=41.0,
                    note="learned lambda (init 1, lambda_max 2, SGD lr 0.01, rate penalty 0)"))
    append_rows(path, rows)
    fig = plot_results(path)
    lines = lines_by_gid(fig.axes[0])
    assert set(lines) == {"ofa:ofa", "learned:ofa, learned λ"}
    np.testing.assert_allclose(lines["ofa:ofa"].get_xdata(), [20.4, 91.8, 326.4])   # the line keeps its 3 periods
    star = lines["learned:ofa, learned λ"]
    assert star.get_marker() == "*" and list(star.get_xdata()) == [41.0] and list(star.get_ydata()) == [88.0]
    assert legend_texts(fig) == ["ofa", "ofa, learned λ"]


def test_a_fixed_rate_model_is_a_baseline_even_if_its_measured_period_differs_by_task(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    rows = [row("ofa", "ks", "accuracy", v, p, True) for p, v in KS.items()]
    rows.append(row("fixed-lam1", "ks", "accuracy", 0.9, None, True, lam=1.0, measured_period_ms=39.3))
    rows.append(row("fixed-lam1", "pr", "per", 0.2, None, False, lam=1.0, measured_period_ms=32.8))
    append_rows(path, rows)
    kinds = classify_models(read_results(path))
    assert kinds == {"ofa": "ofa", "fixed-lam1": "baseline"}
    fig = plot_results(path)
    assert "fixed-lam1 (baseline)" in legend_texts(fig)


# ----------------------------------------------------------------------------- intervals


def _with_ci(model, task, metric, value, period, hib, half, **kw) -> ResultRow:
    return row(model, task, metric, value, period, hib, ci_low=value - half, ci_high=value + half, **kw)


def test_intervals_are_bands_on_lines_and_bars_on_baselines_and_cells_in_the_table(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    rows = [_with_ci("ofa", "ks", "accuracy", v, p, True, 0.02) for p, v in KS.items()]
    rows.append(_with_ci("fixed", "ks", "accuracy", 0.95, None, True, 0.03, lam=1.0, measured_period_ms=40.0))
    append_rows(path, rows)
    points = plot_results.__globals__["prepare_results"](path)
    assert np.allclose(points["ci_high"] - points["ci_low"], [0.06, 0.04, 0.04, 0.04, 0.04, 0.04])
    fig = plot_results(path)
    ax = fig.axes[0]
    gids = {c.get_gid() for c in ax.collections}
    assert {"ci:ofa:ofa", "ci:baseline:fixed"} <= gids
    band = next(c for c in ax.collections if c.get_gid() == "ci:ofa:ofa")
    ys = band.get_paths()[0].vertices[:, 1]
    assert ys.min() == pytest.approx(100 * (min(KS.values()) - 0.02)) and ys.max() == pytest.approx(100 * (0.962 + 0.02))
    table = pivot_results(path)[("ks", "accuracy")]
    assert table.loc["ofa", "20ms"] == "96.2 [94.2, 98.2]" and table.loc["fixed", "40ms"] == "95 [92, 98]"


def test_a_table_without_intervals_plots_and_says_so_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "old.csv"
    append_rows(path, [row("ofa", "ks", "accuracy", v, p, True) for p, v in KS.items()]
                + [row("ofa", "pr", "per", v, p, False) for p, v in PR.items()])
    code, out, err = run_main(["plot", str(path), "-o", str(tmp_path / "f.png")], capsys)
    assert code == 0 and err.count("no confidence intervals") == 1, err
    code, out, err = run_main(["plot", str(path), "--table"], capsys)
    assert code == 0 and "96.2 " in out and "[" not in out.split("96.2")[1].split("│")[0]


def test_several_seeds_pool_their_outcomes_into_one_interval(tmp_path: Path) -> None:
    from ofactl.outcomes import Outcomes
    from ofactl.stats import interval

    rng = np.random.default_rng(0)
    hard = rng.random(300)
    path = tmp_path / "results.csv"
    runs = []
    for seed, p in ((0, 0.7), (1, 0.8)):
        out = Outcomes("ks", [f"u{i}" for i in range(300)], {"correct": (hard < p).astype(float), "n": np.ones(300)})
        runs.append(out)
        ci = interval(out, "accuracy")
        append_rows(path, [row("ofa", "ks", "accuracy", ci.value, 20, True, seed=seed, ci_low=ci.low, ci_high=ci.high,
                               per_utterance=out)])
    points = plot_results.__globals__["prepare_results"](path)
    pooled = interval(runs, "accuracy")
    mean = np.mean([r.stats["correct"].mean() for r in runs])
    assert points.loc[0, "value"] == pytest.approx(mean) and points.loc[0, "n_seeds"] == 2
    assert (points.loc[0, "ci_low"], points.loc[0, "ci_high"]) == (pooled.low, pooled.high)
