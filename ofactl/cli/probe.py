"""``ofactl probe`` (one downstream probe) and ``ofactl sweep`` (a task across frame periods)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ofactl.cli import precheck
from ofactl.cli.app import app
from ofactl.cli.options import (
    DataOption, DeviceOption, EpochsOption, FeaturesOption, LambdaOption, LayerOption, ModelOption, PatienceOption,
    PeriodOption, PoolingOption, PrecisionOption, QuietOption, ResultsOption, SeedOption, SeedsOption, TaskOption,
)
from ofactl.errors import OfactlError
from ofactl.task_names import check_task_name

def resolve_data(task: str, data: Path | None) -> Path:
    """``--data``, else the workspace's ``[data] <task>``, else one error line saying how to set it."""
    if data is not None:
        return precheck.existing(data, "--data", hint=f"check the path of the {task} dataset")
    from ofactl.workspace import find_workspace

    ws = find_workspace()
    if ws is not None and task in ws.data:
        return ws.data[task]
    where = f"{ws.path} has no `{task}` under [data]" if ws is not None else "no ofactl.toml here or above"
    raise OfactlError(f"no dataset for task {task} ({where})",
                      hint=f'pass --data DIR, or add `{task} = "/path/to/data"` under [data] in ofactl.toml')


def resolve_results(results: Path | None) -> Path:
    if results is not None:
        return results
    from ofactl.workspace import find_workspace

    ws = find_workspace()
    return ws.results if ws is not None else Path("results.csv").absolute()


def _check_task(task: str) -> None:
    check_task_name(task)  # ofactl.tasks would import torch


def _layer(layer: str) -> str | int:
    if layer in ("last", "weighted"):
        return layer
    try:
        return int(layer)
    except ValueError:
        raise OfactlError(f"--layer must be `last`, `weighted` or a layer number, found {layer!r}") from None


def _ci_text(low, high) -> str:
    if low is None or high is None or low != low:
        return "-"
    return f"[{low:.4f}, {high:.4f}]"


def _print_rows(rows, results: Path) -> None:
    from rich.table import Table

    table = Table("task", "split", "metric", "value", "95% CI", "n", "period (target / measured)", "lambda", "lr",
                  "seed", "status", box=None, pad_edge=False)
    for r in rows:
        target = f"{r.target_period_ms:g}ms" if r.target_period_ms is not None else "-"
        measured = f"{r.measured_period_ms:.1f}ms" if r.measured_period_ms is not None else "-"
        value = "-" if r.value != r.value else f"{r.value:.4f}"
        table.add_row(r.task, r.split, r.metric, value, _ci_text(r.ci_low, r.ci_high), str(r.n_utterances),
                      f"{target} / {measured}", "-" if r.lam is None else f"{r.lam:.4g}",
                      "-" if r.lr is None else f"{r.lr:g}", str(r.seed), r.status)
    for column in table.columns:  # a narrow terminal wraps a cell; it never cuts a number to "[0.16…"
        column.overflow = "fold"
    console = Console(soft_wrap=True)
    if not console.is_terminal:  # a log or a pipe has no width: take what the table needs
        console = Console(soft_wrap=True, width=max(console.width, 160))
    console.print(table)
    _print_pooled(rows, console)
    notes = {r.note for r in rows if r.note}
    for note in notes:
        console.print(f"note: {note}", highlight=False)
    console.print(f"{len(rows)} row(s) appended to {results}", highlight=False)


def _print_pooled(rows, console) -> None:
    """With several seeds of one point: their mean and the interval pooled over seeds (ofactl.stats.interval)."""
    from ofactl.stats import interval

    groups: dict[tuple, list] = {}
    for r in rows:
        if r.split == "test" and r.status == "ok" and r.per_utterance is not None:
            groups.setdefault((r.metric, r.variant), []).append(r)
    for (metric, variant), group in groups.items():
        if len({r.seed for r in group}) < 2:
            continue
        ci = interval([r.per_utterance for r in group], metric)
        console.print(f"{metric}{f' ({variant})' if variant else ''}: mean of {ci.n_seeds} seeds "
                      f"{ci.value:.4f}, 95% CI [{ci.low:.4f}, {ci.high:.4f}] (test utterances and seeds resampled, "
                      f"n = {ci.n})", highlight=False)


@app.command()
def probe(
    task: TaskOption,
    period: PeriodOption = None,
    lam: LambdaOption = None,
    learn_lambda: Annotated[bool, typer.Option("--learn-lambda", help="Learn lambda jointly with the probe.")] = False,
    lambda_init: Annotated[Optional[str], typer.Option(
        "--lambda-init", metavar="X[,X...]", show_default=False,
        help="Initial lambda(s) with --learn-lambda, one run each (default: lambda_max/2).")] = None,
    lambda_lr: Annotated[Optional[float], typer.Option("--lambda-lr", metavar="X", show_default=False,
                                                       help="SGD learning rate of theta (default: the task's).")] = None,
    rate_penalty: Annotated[float, typer.Option("--rate-penalty", metavar="W",
                                                help="Weight of the frame-rate penalty with --learn-lambda.")] = 0.0,
    model: ModelOption = None,
    data: DataOption = None,
    lr: Annotated[Optional[float], typer.Option("--lr", metavar="X", show_default=False,
                                                help="Probe learning rate (default: the task's).")] = None,
    seed: SeedOption = 0,
    seeds: SeedsOption = 1,
    results: ResultsOption = None,
    layer: LayerOption = "last",
    features_dir: FeaturesOption = None,
    max_epochs: EpochsOption = 40,
    patience: PatienceOption = 6,
    pooling: PoolingOption = "cif",
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Train a probe for TASK at one frame period (or lambda, or a learned lambda); append its rows.

    Test rows carry a 95% bootstrap interval over test utterances, and the
    per-utterance outcomes are kept beside the results table (for `ofactl compare`).
    """
    from ofactl.results import append_rows

    _check_task(task)
    chosen = sum(x is not None for x in (period, lam)) + int(learn_lambda)
    if chosen != 1:
        raise OfactlError("give exactly one of --period, --lambda and --learn-lambda")
    if not learn_lambda and (lambda_init is not None or lambda_lr is not None or rate_penalty):
        raise OfactlError("--lambda-init, --lambda-lr and --rate-penalty need --learn-lambda")
    if pooling not in ("cif", "avg", "uniform"):
        raise OfactlError(f"--pooling must be cif, avg or uniform, found {pooling!r}")
    if pooling != "cif" and period is None:
        raise OfactlError(f"--pooling {pooling} needs --period")
    inits = _split_list(lambda_init, float, "--lambda-init")
    data_path = resolve_data(task, data)
    results_path = resolve_results(results)
    which = _layer(layer)
    model_dir = precheck.model(model)
    precheck.precision(precision)
    if learn_lambda:
        from ofactl.adaptive import check_learnable

        check_learnable(task)
    from ofactl.inference import load_model

    m = load_model(model_dir, device=device, precision=precision)
    from ofactl.progress import ProgressLine

    with ProgressLine(f"probe {task}", enabled=not quiet) as status:
        from ofactl.probe import default_features_dir

        if learn_lambda:
            from ofactl.adaptive import run_adaptive

            rows = run_adaptive(task, data_path, m, lam_init=inits, lambda_lr=lambda_lr,
                                rate_penalty=rate_penalty, lr=lr, seed=seed, n_seeds=seeds, layer=which,
                                max_epochs=max_epochs, patience=patience,
                                features_dir=features_dir or default_features_dir(results_path))
        else:
            from ofactl.probe import run_probe

            rows = run_probe(task, data_path, m, period=period, lam=lam, lr=lr, seed=seed, n_seeds=seeds, layer=which,
                             features_dir=features_dir or default_features_dir(results_path), max_epochs=max_epochs,
                             patience=patience, progress=lambda _done, _total, desc: status.stage(desc),
                             pooling=pooling)
    append_rows(results_path, rows)
    _print_rows(rows, results_path)


def _launcher(kind: str, jobs: int, results: Path, options: dict):
    """The launcher of ``--launcher KIND``: one line for an unknown kind, slurm options without slurm, or a
    missing submitit (before any model is loaded)."""
    from ofactl.launch import Inline, LocalPool, Submitit, require_submitit, slurm_params

    given = {k: v for k, v in options.items() if v is not None}
    if kind == "local":
        if given:
            raise OfactlError(f"--slurm-{next(iter(given))} needs --launcher slurm")
        return Inline() if jobs == 1 else LocalPool(jobs)
    if kind != "slurm":
        raise OfactlError(f"--launcher must be local or slurm, found {kind!r}")
    from ofactl.sweep import jobs_dir
    from ofactl.workspace import find_workspace

    ws = find_workspace()
    settings = {**(ws.slurm if ws is not None else {}), **given}
    require_submitit()
    chosen = Submitit(jobs_dir(results) / "slurm", cluster="slurm", params=slurm_params(**settings),
                      parallel=jobs if jobs > 1 else None)
    chosen.check()
    return chosen


def _split_list(text: str | None, parse, what: str) -> list | None:
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise OfactlError(f"{what} is empty")
    out = []
    for item in items:
        try:
            out.append(parse(item))
        except OfactlError:
            raise
        except ValueError:
            raise OfactlError(f"{what}: cannot read {item!r}", hint="a comma-separated list, e.g. 1e-4,1e-3") from None
    return out


@app.command()
def sweep(
    task: TaskOption,
    periods: Annotated[Optional[str], typer.Option(
        "--periods", metavar="LIST", show_default=False,
        help="Comma-separated periods, e.g. 20ms,40ms,90ms (default: log-spaced over the calibrated range).")] = None,
    lambdas: Annotated[Optional[str], typer.Option(
        "--lambdas", metavar="LIST", show_default=False,
        help="Comma-separated lambdas instead of periods (e.g. 1 for a model pretrained at fixed lambda 1).")] = None,
    model: ModelOption = None,
    data: DataOption = None,
    results: ResultsOption = None,
    lrs: Annotated[Optional[str], typer.Option("--lrs", metavar="LIST", show_default=False,
                                               help="Learning-rate grid chosen from on dev (default: x0.1, x1, x10 the task's).")] = None,
    seed: SeedOption = 0,
    seeds: SeedsOption = 1,
    layer: LayerOption = "last",
    features_dir: FeaturesOption = None,
    max_epochs: EpochsOption = 40,
    patience: PatienceOption = 6,
    pooling: PoolingOption = "cif",
    launcher: Annotated[str, typer.Option(
        "--launcher", metavar="KIND",
        help="Where the jobs (period x lr x seed) run: local (this machine, --jobs at once) or slurm (a job array "
             "through submitit; settings from --slurm-* or \\[slurm] in ofactl.toml).")] = "local",
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, metavar="N",
                                      help="Concurrent jobs: processes with --launcher local, array tasks "
                                           "running at once with slurm.")] = 1,
    slurm_partition: Annotated[Optional[str], typer.Option("--slurm-partition", metavar="NAME", show_default=False,
                                                           help="SLURM partition.")] = None,
    slurm_gpus: Annotated[Optional[int], typer.Option("--slurm-gpus", metavar="N", show_default=False,
                                                      help="GPUs per job.")] = None,
    slurm_time: Annotated[Optional[str], typer.Option("--slurm-time", metavar="TIME", show_default=False,
                                                      help="Time limit per job: minutes, H:MM:SS or D-HH:MM:SS.")] = None,
    slurm_mem: Annotated[Optional[str], typer.Option("--slurm-mem", metavar="SIZE", show_default=False,
                                                     help="Memory per job, e.g. 32G (see --dry-run for the need).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan (jobs, feature bytes, memory per job, "
                                                            "audio to extract) and run nothing.")] = False,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    quiet: QuietOption = False,
) -> None:
    """Probe TASK across frame periods (resumable; failures are recorded and the sweep goes on)."""
    from ofactl.period import FramePeriod

    _check_task(task)
    period_list = _split_list(periods, FramePeriod.parse, "--periods")
    lambda_list = _split_list(lambdas, float, "--lambdas")
    if period_list and lambda_list:
        raise OfactlError("give --periods or --lambdas, not both")
    lr_list = _split_list(lrs, float, "--lrs")
    seed_list = list(range(seed, seed + seeds))
    if lr_list and any(x <= 0 for x in lr_list):
        raise OfactlError("--lrs must be positive")
    if pooling not in ("cif", "avg", "uniform"):
        raise OfactlError(f"--pooling must be cif, avg or uniform, found {pooling!r}")
    data_path = resolve_data(task, data)
    results_path = resolve_results(results)
    which = _layer(layer)
    chosen_launcher = _launcher(launcher, jobs, results_path, dict(partition=slurm_partition, gpus=slurm_gpus,
                                                                   time=slurm_time, mem=slurm_mem))
    model_dir = precheck.model(model)
    precheck.precision(precision)
    from ofactl import distributed as D
    from ofactl.inference import load_model
    from ofactl.sweep import execute, plan_sweep
    from ofactl.sweep_estimate import estimate

    env = D.setup(device)  # under torchrun: every rank extracts a share of the features, rank 0 runs the jobs
    m = load_model(model_dir, device=str(env.device) if env.distributed else device, precision=precision)
    plan = plan_sweep(task, data_path, m, results=results_path, periods=period_list, lambdas=lambda_list, lrs=lr_list,
                      seeds=seed_list, layer=which, features_dir=features_dir, max_epochs=max_epochs,
                      patience=patience, pooling=pooling,
                      job_device="auto" if chosen_launcher.name == "slurm" else device)
    if dry_run:
        if env.is_main:
            Console(soft_wrap=True, highlight=False).print(estimate(plan, jobs=jobs).describe(chosen_launcher))
        return
    if quiet or not env.is_main:
        summary = execute(plan, chosen_launcher)
    else:
        from ofactl.progress import ProgressLine

        with ProgressLine(f"sweep {task}") as bar:
            summary = execute(plan, chosen_launcher, progress=bar.update)
    if not env.is_main:
        return
    console = Console(soft_wrap=True, highlight=False)

    def measured(p, s) -> str:
        row = summary.measured.get((p, s))
        return "" if row is None else f" {row.metric} {row.value:.4f} {_ci_text(row.ci_low, row.ci_high)}"

    for (p, s), lr_value in summary.chosen.items():
        console.print(f"{task} {p} seed {s}: done{measured(p, s)} (lr {lr_value:g})")
    for p, s in summary.scored:
        console.print(f"{task} {p}: done{measured(p, s)} (no training)")
    for p, s in summary.infeasible:
        console.print(f"{task} {p} seed {s}: infeasible (recorded)")
    if summary.skipped:
        console.print(f"{len(summary.skipped)} run(s) already in {results_path}: skipped")
    err = Console(stderr=True, soft_wrap=True, highlight=False)
    for p, s, line in summary.failed:
        err.print(f"[yellow]warning:[/] {task} {p} seed {s} failed: {line}")
    console.print(f"{summary.written} row(s) appended to {results_path}")
    if summary.failed:
        raise typer.Exit(3)
