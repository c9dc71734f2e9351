"""The paper's five claims, tested on a results table with paired bootstrap comparisons.

Chen, Meng & Lee (ICASSP 2023) report five findings about once-for-all
compression.  :func:`check_claims` states each one, makes the comparisons
that test it on the rows of a results table (every comparison a paired
bootstrap over the test utterances both runs scored, :mod:`ofactl.stats`),
and gives a verdict by a rule written next to it:

(a) **widest range vs fixed rate**: the widest-range OFA model, at the period
    of its grid closest to the fixed-rate model's measured period, against the
    fixed-rate model, per task.  "comparable" when the 95% interval of the
    difference lies within ±``margin``; holds when every task is comparable
    (or OFA better), fails when the fixed model is better on any task.
(b) **narrower ranges slightly better**: each narrower-range model against the
    widest at every target period both measured.  Holds when a narrower model
    is better somewhere and worse nowhere; fails when the widest is better more
    often than not; "not shown" when no difference is resolved.
(c) **adaptive lambda on par with the grid's best**: each learned lambda
    against the widest model's grid point with the best dev score (chosen on
    dev, never test).  "on par" within ±``margin`` (or better).
(d) **utterance-level tasks keep most of their accuracy at ~1 s, PR becomes
    infeasible**: the accuracy at the widest model's longest period divided by
    its accuracy at the shortest, with a paired interval; "most" means the
    interval's lower end is above one half.  PR must be infeasible at the
    longest period.
(e) **CIF beats average pooling at large compression**: the widest model
    against fixed-length average pooling *inside the same model*
    (``<widest>+uniform``, ``sweep --pooling uniform``: same weights, same
    number of frames, only the segmentation differs) at every common target
    period of at least ``long_period_ms``, per utterance-level task; without
    those rows, against the plain model's output features average-pooled
    (``<plain>+avgpool``), which runs the full 20 ms model.  Holds when CIF is
    better somewhere and worse nowhere.

A claim whose runs are missing from the table is "not measured".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from ofactl.errors import OfactlError

UTTERANCE_TASKS = ("ks", "sid", "ic", "er")
STATEMENTS = {
    "a": "The widest-range OFA model is comparable to the fixed-rate model at that model's frame period.",
    "b": "Narrower lambda ranges give slightly better models within their range.",
    "c": "A learned (adaptive) lambda lands on par with the best period of a grid search.",
    "d": "Utterance-level tasks keep most of their accuracy at a ~1 s frame period, while PR becomes infeasible.",
    "e": "At large compression, CIF (variable-length) subsampling beats average pooling.",
}


@dataclass
class Evidence:
    """One comparison behind a claim: its task, a line of numbers and its outcome word."""

    task: str
    text: str
    outcome: str


@dataclass
class Claim:
    key: str
    statement: str
    verdict: str = "not measured"
    evidence: list[Evidence] = field(default_factory=list)
    note: str = ""


def _fraction_metric(metric: str) -> bool:
    return metric in ("accuracy", "per", "wer", "cer", "slot_type_f1", "slot_value_cer")


def _pts(value: float, metric: str, signed: bool = False) -> str:
    if not math.isfinite(value):
        return "?"
    if _fraction_metric(metric):
        return f"{value * 100:+.1f}" if signed else f"{value * 100:.1f}"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _diff_text(a_label: str, b_label: str, d) -> str:
    unit = " pt" if _fraction_metric(d.metric) else ""
    return (f"{a_label} {_pts(d.a, d.metric)} vs {b_label} {_pts(d.b, d.metric)}: "
            f"{_pts(d.diff, d.metric, True)}{unit} [{_pts(d.low, d.metric, True)}, {_pts(d.high, d.metric, True)}]"
            f" (n={d.n})")


class _Table:
    """The results table with run selection and cached outcomes."""

    def __init__(self, results: str | Path, warn=None):
        from ofactl.results import read_results

        self.path = Path(results)
        self.df = read_results(results, warn=warn)
        self._runs: dict[tuple[str, str], object] = {}  # each run's outcome files are read once

    def grid(self, model: str, task: str) -> list[tuple[float, float, str]]:
        """``(target period, measured period, status)`` of a model's grid points (variant "" or avgpool) for task."""
        from ofactl.tasks import get_task

        primary = get_task(task).primary.name
        df = self.df
        rows = df[(df["model"] == model) & (df["task"] == task) & (df["split"] == "test") & (df["metric"] == primary)
                  & df["target_period_ms"].notna() & ~df["variant"].astype(str).str.startswith("learned")]
        out = []
        for target, group in rows.groupby("target_period_ms"):
            status = "ok" if (group["status"] == "ok").any() else str(group["status"].iloc[0])
            out.append((float(target), float(group["measured_period_ms"].mean()), status))
        return sorted(out)

    def has(self, model: str | None, task: str) -> bool:
        df = self.df
        return model is not None and bool(((df["model"] == model) & (df["task"] == task)).any())

    def run(self, task: str, spec: str):
        from ofactl.compare import select_run
        from ofactl.tasks import get_task

        if (task, spec) not in self._runs:
            t = get_task(task)
            self._runs[(task, spec)] = select_run(self.df, self.path, task, spec, t.primary.name,
                                                  primary=t.primary.name)
        return self._runs[(task, spec)]

    def tasks(self) -> list[str]:
        from ofactl.plot import TASKS

        present = set(self.df["task"])
        return [t for t in TASKS if t in present and t != "profile"]


def _ms(value: float) -> str:
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def check_claims(
    results: str | Path,
    *,
    widest: str,
    narrower: Sequence[str] = (),
    fixed: str | None = None,
    plain: str | None = None,
    margin: float = 0.05,
    long_period_ms: float = 300.0,
    warn=None,
) -> list[Claim]:
    """Test the five claims on ``results`` (see the module docstring); one :class:`Claim` each, in order.

    Args:
        widest: the widest-range OFA model (lambda in [0, 2)).
        narrower: narrower-range OFA models (lambda_max 1 and 1.5 in the paper).
        fixed: the fixed-rate model (pretrained at lambda 1).
        plain: the lambda_max = 0 model, whose average-pooled baseline is ``<plain>+avgpool``.
        margin: equivalence margin for "comparable" / "on par", in the metric's units (0.05 = 5 points).
        long_period_ms: "large compression" for claim (e) starts here.
    """
    from ofactl.stats import paired_difference, paired_ratio

    if margin < 0:
        raise OfactlError(f"--margin must be >= 0, found {margin:g}")
    table = _Table(results, warn)
    if not (table.df["model"] == widest).any():
        raise OfactlError(f"no rows of model {widest!r} in {results}",
                          hint=f"models there: {', '.join(sorted(set(table.df['model'].astype(str))))}")
    claims = {k: Claim(k, s) for k, s in STATEMENTS.items()}

    # (a) widest vs fixed at the fixed model's period
    c = claims["a"]
    for task in table.tasks():
        if not (table.has(fixed, task) and table.has(widest, task)):
            continue
        try:
            fixed_run = table.run(task, fixed)
        except OfactlError as err:
            c.evidence.append(Evidence(task, f"{fixed}: {err.message}", "missing"))
            continue
        grid = [g for g in table.grid(widest, task) if g[2] == "ok"]
        if not grid:
            continue
        target, measured, _ = min(grid, key=lambda g: abs(math.log(g[1] / fixed_run.measured_period_ms)))
        from ofactl.period import FramePeriod

        ofa_run = table.run(task, f"{widest}@{FramePeriod(round(target, 3))}")
        d = paired_difference(ofa_run.outcomes, fixed_run.outcomes, fixed_run.rows["metric"].iloc[0], margin=margin)
        outcome = ("comparable" if d.equivalent else {"a": "OFA better", "b": "fixed better"}.get(d.better,
                                                                                                   "inconclusive"))
        text = (_diff_text(f"OFA@{_ms(ofa_run.measured_period_ms)}", f"fixed@{_ms(fixed_run.measured_period_ms)}", d)
                + f" {d.metric}")
        c.evidence.append(Evidence(task, text, outcome))
    outcomes = [e.outcome for e in c.evidence if e.outcome != "missing"]
    if outcomes:
        c.verdict = ("does not hold" if "fixed better" in outcomes else
                     "holds" if all(o in ("comparable", "OFA better") for o in outcomes) else "inconclusive")
        c.note = f"comparable: the 95% interval of the difference within ±{_pts(margin, 'accuracy')} points"

    # (b) narrower ranges vs widest at shared periods
    c = claims["b"]
    for model in narrower:
        for task in table.tasks():
            if not (table.has(model, task) and table.has(widest, task)):
                continue
            mine = {g[0]: g for g in table.grid(model, task) if g[2] == "ok"}
            wide = {g[0]: g for g in table.grid(widest, task) if g[2] == "ok"}
            for target in sorted(set(mine) & set(wide)):
                from ofactl.period import FramePeriod

                p = FramePeriod(round(target, 3))
                ra, rb = table.run(task, f"{model}@{p}"), table.run(task, f"{widest}@{p}")
                d = paired_difference(ra.outcomes, rb.outcomes, ra.rows["metric"].iloc[0])
                outcome = {"a": "narrower better", "b": "widest better"}.get(d.better, "no difference")
                c.evidence.append(Evidence(task, _diff_text(f"{model}@{p}", f"{widest}", d) + f" {d.metric}", outcome))
    if c.evidence:
        better = sum(e.outcome == "narrower better" for e in c.evidence)
        worse = sum(e.outcome == "widest better" for e in c.evidence)
        c.verdict = ("holds" if better and not worse else "does not hold" if worse > better else
                     "not shown" if not better and not worse else "mixed")
        c.note = f"{better} comparison(s) favour a narrower range, {worse} the widest, {len(c.evidence) - better - worse} neither"

    # (c) learned lambda vs the grid's best (chosen on dev)
    c = claims["c"]
    for task in table.tasks():
        df = table.df
        learned = sorted(set(df.loc[(df["model"] == widest) & (df["task"] == task)
                                    & df["variant"].astype(str).str.startswith("learned"), "variant"]))
        for variant in learned:
            try:
                best = table.run(task, f"{widest}@best")
                run = table.run(task, f"{widest}@{variant}")
            except OfactlError as err:
                c.evidence.append(Evidence(task, err.message, "missing"))
                continue
            d = paired_difference(run.outcomes, best.outcomes, run.rows["metric"].iloc[0], margin=margin)
            outcome = ("on par" if d.equivalent or d.better == "a" else
                       "below the grid's best" if d.better == "b" else "inconclusive")
            init = variant.removeprefix("learned-init").split("-")[0]
            text = _diff_text(f"learned λ={run.lam:.2f} (init {init}, {_ms(run.measured_period_ms)})",
                              f"grid best {best.point}", d) + f" {d.metric}"
            c.evidence.append(Evidence(task, text, outcome))
    outcomes = [e.outcome for e in c.evidence if e.outcome != "missing"]
    if outcomes:
        c.verdict = ("holds" if all(o == "on par" for o in outcomes) else
                     "does not hold" if "below the grid's best" in outcomes else "inconclusive")
        c.note = f"on par: the interval within ±{_pts(margin, 'accuracy')} points, or the learned lambda better"

    # (d) accuracy kept at the longest period; PR infeasible there
    c = claims["d"]
    from ofactl.period import FramePeriod

    for task in table.tasks():
        grid = table.grid(widest, task)
        if len(grid) < 2:
            continue
        shortest, longest = grid[0], grid[-1]
        if task in UTTERANCE_TASKS:
            if shortest[2] != "ok" or longest[2] != "ok":
                c.evidence.append(Evidence(task, f"{task} at {_ms(longest[1])}: {longest[2]}", "lost"))
                continue
            long_run = table.run(task, f"{widest}@{FramePeriod(round(longest[0], 3))}")
            short_run = table.run(task, f"{widest}@{FramePeriod(round(shortest[0], 3))}")
            metric = long_run.rows["metric"].iloc[0]
            r = paired_ratio(long_run.outcomes, short_run.outcomes, metric)
            kept = r.low > 0.5
            text = (f"{metric} at {_ms(long_run.measured_period_ms)} {_pts(long_run.rows['value'].mean(), metric)}"
                    f" vs {_ms(short_run.measured_period_ms)} {_pts(short_run.rows['value'].mean(), metric)}: "
                    f"kept {r.value:.0%} [{r.low:.0%}, {r.high:.0%}] (n={r.n})")
            c.evidence.append(Evidence(task, text, "kept most" if kept else "lost"))
        elif task in ("pr", "asr", "sf"):
            infeasible = [g for g in grid if g[2] == "infeasible"]
            first = f"infeasible from {_ms(infeasible[0][1])}" if infeasible else "feasible everywhere"
            c.evidence.append(Evidence(task, f"{task} up to {_ms(longest[1])}: {first}",
                                       "infeasible" if longest[2] == "infeasible" else "feasible"))
    if c.evidence:
        utt = [e for e in c.evidence if e.task in UTTERANCE_TASKS]
        ctc = [e for e in c.evidence if e.task == "pr"]
        ok = all(e.outcome == "kept most" for e in utt) and all(e.outcome == "infeasible" for e in ctc)
        c.verdict = "holds" if ok and utt else "does not hold"
        c.note = "kept most: the lower end of the 95% interval of (long / short) above 50%"
        if not ctc:
            c.note += "; PR not measured"

    # (e) CIF vs fixed-length pooling at long periods: inside the same model (equal compute) when measured, else
    # the plain model's output features average-pooled (a weaker comparison: it runs the full 20 ms model)
    c = claims["e"]
    baselines = [(f"{widest}+uniform", "fixed-length pooling in the model"),
                 *([(f"{plain}+avgpool", "output average pooling")] if plain else [])]
    present = [(name, what) for name, what in baselines if (table.df["model"] == name).any()]
    for name, what in present[:1]:
        for task in table.tasks():
            if task not in UTTERANCE_TASKS or not (table.has(name, task) and table.has(widest, task)):
                continue
            cif = {g[0]: g for g in table.grid(widest, task) if g[2] == "ok"}
            avg = {g[0]: g for g in table.grid(name, task) if g[2] == "ok"}
            for target in sorted(t for t in set(cif) & set(avg) if t >= long_period_ms):
                p = FramePeriod(round(target, 3))
                ra, rb = table.run(task, f"{widest}@{p}"), table.run(task, f"{name}@{p}")
                d = paired_difference(ra.outcomes, rb.outcomes, ra.rows["metric"].iloc[0])
                outcome = {"a": "CIF better", "b": "fixed-length better"}.get(d.better, "no difference")
                c.evidence.append(Evidence(task, _diff_text(f"CIF@{p}", "fixed-length", d) + f" {d.metric}", outcome))
        if c.evidence:
            better = sum(e.outcome == "CIF better" for e in c.evidence)
            worse = sum(e.outcome == "fixed-length better" for e in c.evidence)
            c.verdict = ("holds" if better and not worse else "does not hold" if worse > better else
                         "not shown" if not better and not worse else "mixed")
            c.note = (f"against {what} ({name}); {better} comparison(s) favour CIF, {worse} fixed-length pooling, "
                      f"{len(c.evidence) - better - worse} neither")
    return list(claims.values())


def render_claims(claims: Sequence[Claim]) -> str:
    """The claims as a Markdown table (claim, evidence, verdict) followed by the rules."""
    lines = ["| claim | measured (95% paired bootstrap intervals) | verdict |", "|---|---|---|"]
    for c in claims:
        evidence = "<br>".join(f"{e.task.upper()}: {e.text} → {e.outcome}" for e in c.evidence) or "—"
        if c.note:
            evidence += f"<br>*{c.note}*"
        lines.append(f"| ({c.key}) {c.statement} | {evidence} | **{c.verdict}** |")
    return "\n".join(lines)


__all__ = ["Claim", "Evidence", "STATEMENTS", "check_claims", "render_claims"]
