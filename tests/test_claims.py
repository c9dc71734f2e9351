"""`ofactl claims`: the five claims' comparisons and verdict rules, on a results table of simulated outcomes."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from ofactl.claims import check_claims, render_claims
from ofactl.cli import app
from ofactl.errors import OfactlError
from ofactl.outcomes import Outcomes
from ofactl.results import ResultRow, append_rows, learned_variant

N = 600
IDS = [f"u{i:04d}" for i in range(N)]
HARD = np.random.default_rng(0).random(N)


def ks(model, p_right, *, period=None, lam=None, measured=None, variant="", dev=None):
    out = Outcomes("ks", IDS, {"correct": (HARD < p_right).astype(float), "n": np.ones(N)})
    common = dict(model=model, task="ks", lam=lam, target_period_ms=period, measured_period_ms=measured or period,
                  variant=variant, layer="last", higher_is_better=True, metric="accuracy")
    value = float(out.stats["correct"].mean())
    return [ResultRow(value=value, split="test", n_utterances=N, per_utterance=out, **common),
            ResultRow(value=dev if dev is not None else value, split="dev", **common)]


def pr(model, rate, *, period, status="ok"):
    ref = np.full(N, 30.0)
    out = Outcomes("pr", IDS, {"errors": np.round(ref * rate * (0.5 + HARD)), "ref": ref})
    common = dict(model=model, task="pr", lam=None, target_period_ms=period, measured_period_ms=period, layer="last",
                  higher_is_better=False, metric="per", status=status)
    value = float(out.stats["errors"].sum() / ref.sum()) if status == "ok" else float("nan")
    return [ResultRow(value=value, split="test", n_utterances=N, per_utterance=out if status == "ok" else None,
                      **common), ResultRow(value=value, split="dev", **common)]


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "results.csv"
    rows = [
        *ks("ofa", 0.80, period=20.0, dev=0.80), *ks("ofa", 0.78, period=40.0, measured=41.0, dev=0.79),
        *ks("ofa", 0.70, period=1000.0, dev=0.70),
        *ks("fixed", 0.785, lam=1.0, measured=43.0),
        *ks("ofa15", 0.86, period=20.0),
        *ks("ofa", 0.79, lam=1.1, measured=50.0, variant=learned_variant(0.4)),
        *ks("plain+avgpool", 0.76, period=1000.0, variant="avgpool"),
        *ks("ofa2+uniform", 0.6, period=1000.0, variant="uniform"),
        *pr("ofa", 0.3, period=20.0), *pr("ofa", 0.0, period=1000.0, status="infeasible"),
    ]
    for i in range(0, len(rows), 2):
        append_rows(path, rows[i:i + 2])
    return path


def test_the_five_verdicts(table):
    claims = {c.key: c for c in check_claims(table, widest="ofa", narrower=["ofa15"], fixed="fixed", plain="plain")}
    a = claims["a"]  # ofa@40ms (measured 41) is the grid point nearest the fixed model's 43 ms
    assert [e.outcome for e in a.evidence] == ["comparable"] and a.verdict == "holds"
    assert "OFA@41 ms" in a.evidence[0].text and "fixed@43 ms" in a.evidence[0].text
    assert claims["b"].verdict == "holds" and [e.outcome for e in claims["b"].evidence] == ["narrower better"]
    assert claims["c"].verdict == "holds" and "init 0.4" in claims["c"].evidence[0].text  # best on dev: 20 ms
    assert "grid best 20ms" in claims["c"].evidence[0].text
    d = {e.task: e for e in claims["d"].evidence}
    assert d["ks"].outcome == "kept most" and "kept 86%" in d["ks"].text and d["pr"].outcome == "infeasible"
    assert claims["d"].verdict == "holds"
    assert claims["e"].verdict == "does not hold" and claims["e"].evidence[0].outcome == "fixed-length better"
    assert "output average pooling (plain+avgpool)" in claims["e"].note
    text = render_claims(claims.values())
    assert text.count("\n| (") == 5 and "**does not hold**" in text


def test_a_stricter_margin_turns_comparable_into_inconclusive(table):
    a = check_claims(table, widest="ofa", fixed="fixed", margin=0.001)[0]
    assert a.evidence[0].outcome == "inconclusive" and a.verdict == "inconclusive"


def test_missing_runs_are_not_measured_and_a_missing_model_is_one_line(table):
    claims = check_claims(table, widest="ofa")
    assert [c.verdict for c in claims if c.key in "abe"] == ["not measured"] * 3
    with pytest.raises(OfactlError, match="no rows of model 'nope'"):
        check_claims(table, widest="nope")


def test_cli_writes_the_markdown(table, tmp_path):
    out = tmp_path / "claims.md"
    result = CliRunner().invoke(app, ["claims", str(table), "--widest", "ofa", "--narrower", "ofa15", "--fixed", "fixed",
                                      "--plain", "plain", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("| claim |") and "(e) At large compression" in result.stdout


def test_claim_e_prefers_pooling_inside_the_same_model(table):
    append_rows(table, ks("ofa+uniform", 0.6, period=1000.0, variant="uniform"))
    e = check_claims(table, widest="ofa", plain="plain")[4]
    assert e.verdict == "holds" and e.evidence[0].outcome == "CIF better"
    assert "fixed-length pooling in the model (ofa+uniform)" in e.note
