"""Where a sweep's jobs run: in this process, in N local processes, or on a SLURM cluster (submitit).

A launcher takes a picklable function and a list of jobs and yields
``(job, result or exception)`` as each job ends, in any order.  A job that
raises, or whose process dies, is one failed job: the others go on.

* :class:`Inline`: one after another in this process (``--jobs 1``).
* :class:`LocalPool`: ``jobs`` worker processes on this machine
  (:class:`concurrent.futures.ProcessPoolExecutor`, spawned, each with its
  share of the CPU threads).  A worker that dies (killed, out of memory)
  breaks the pool for every job in flight; those jobs are run again one at a
  time, so the one that kills its process is the one recorded as failed.
* :class:`Submitit`: a SLURM job array through submitit (the tool fairseq
  and hydra use), or submitit's local executor (``cluster="local"``: the
  same submission path without SLURM, what the tests run).  Job logs go to
  ``folder``.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ofactl.errors import OfactlError, first_line

Outcome = tuple[Any, Any]   # (job, its result or the exception that ended it)


class JobDied(RuntimeError):
    """The process running a job ended without a result (killed, out of memory, a crash in native code)."""


class Inline:
    """Run every job in this process, in order."""

    name = "inline"
    jobs = 1

    def run(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> Iterator[Outcome]:
        for job in jobs:
            try:
                yield job, fn(job)
            except KeyboardInterrupt:
                raise
            except Exception as err:  # noqa: BLE001 - recorded by the caller, and the sweep goes on
                yield job, err


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


@dataclass
class LocalPool:
    """``jobs`` concurrent worker processes on this machine, each with ``threads`` torch threads
    (default: the CPUs divided among the workers)."""

    jobs: int
    threads: int | None = None
    name: str = "local"

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise OfactlError(f"--jobs must be at least 1, found {self.jobs}")

    def _pool(self, workers: int) -> ProcessPoolExecutor:
        threads = self.threads or max(1, (os.cpu_count() or 1) // workers)
        return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                   initargs=(threads,))

    def run(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> Iterator[Outcome]:
        suspects: list[Any] = []
        with self._pool(min(self.jobs, max(len(jobs), 1))) as pool:
            futures = {pool.submit(fn, job): job for job in jobs}
            for future in as_completed(futures):
                job = futures[future]
                try:
                    yield job, future.result()
                except BrokenProcessPool:
                    suspects.append(job)  # a worker died: which job killed it is not known yet
                except KeyboardInterrupt:
                    raise
                except Exception as err:  # noqa: BLE001
                    yield job, err
        for job in suspects:  # alone in a fresh process each: the job that dies again is the culprit
            with self._pool(1) as pool:
                try:
                    yield job, pool.submit(fn, job).result()
                except BrokenProcessPool:
                    yield job, JobDied("its process died (killed, out of memory, or a crash); see the system log")
                except KeyboardInterrupt:
                    raise
                except Exception as err:  # noqa: BLE001
                    yield job, err


@dataclass
class Submitit:
    """A job array through submitit: ``cluster="slurm"`` submits with sbatch, ``"local"`` runs the same path
    on this machine.  ``params`` are submitit's executor parameters (``slurm_partition``, ``gpus_per_node``,
    ``timeout_min``, ``mem_gb``, ``cpus_per_task``, ...)."""

    folder: Path
    cluster: str = "slurm"
    params: dict[str, Any] = field(default_factory=dict)
    parallel: int | None = None   # at most this many array tasks at once
    name: str = "slurm"

    def executor(self):
        """submitit's executor with this launcher's settings: one line when there is no cluster to submit to or a
        setting is wrong (checked before any work, by :meth:`check`)."""
        submitit = require_submitit()
        try:
            executor = submitit.AutoExecutor(folder=str(Path(self.folder) / "%j"), cluster=self.cluster)
        except Exception as err:  # noqa: BLE001 - e.g. no srun/sbatch on this machine
            raise OfactlError(f"the sweep's jobs could not be submitted: {first_line(err)}",
                              hint="run the sweep on a machine of the SLURM cluster, or use --launcher local") from None
        params = dict(self.params)
        if self.parallel:
            params["slurm_array_parallelism"] = self.parallel
        params.setdefault("name", "ofactl-sweep")
        try:
            executor.update_parameters(**params)
        except (TypeError, ValueError, AssertionError, NameError) as err:
            raise OfactlError(f"bad SLURM settings: {first_line(err)}",
                              hint="see --slurm-partition, --slurm-gpus, --slurm-time, --slurm-mem") from None
        return executor

    def check(self) -> None:
        """Fail now, with one line, if jobs could not be submitted."""
        self.executor()

    def run(self, fn: Callable[[Any], Any], jobs: Sequence[Any]) -> Iterator[Outcome]:
        submitit = require_submitit()
        if not jobs:
            return
        executor = self.executor()
        try:
            submitted = executor.map_array(fn, list(jobs))
        except Exception as err:  # noqa: BLE001 - sbatch's message is the one line the user needs
            raise OfactlError(f"the sweep's jobs could not be submitted: {first_line(err)}",
                              hint="check the SLURM settings ([slurm] in ofactl.toml or --slurm-*) and `sinfo`") from None
        index = {id(j): job for j, job in zip(submitted, jobs)}
        for handle in submitit.helpers.as_completed(submitted, poll_frequency=2 if self.cluster == "local" else 30):
            job = index[id(handle)]
            try:
                yield job, handle.result()
            except KeyboardInterrupt:
                raise
            except Exception as err:  # noqa: BLE001 - a failed or killed array task
                yield job, JobDied(f"job {handle.job_id} failed: {first_line(err)}")


def require_submitit():
    try:
        import submitit
    except ImportError:
        raise OfactlError("--launcher slurm needs submitit, which is not installed",
                          hint="pip install 'ofactl[slurm]' (or pip install submitit)") from None
    return submitit


def slurm_params(partition: str | None = None, gpus: int | None = None, time: str | None = None,
                 mem: str | None = None, cpus: int | None = None) -> dict[str, Any]:
    """submitit executor parameters from the ``--slurm-*`` options (``time`` as minutes, ``H:MM:SS`` or
    ``D-HH:MM:SS``; ``mem`` as ``32G``, ``500M`` or GB)."""
    params: dict[str, Any] = {}
    if partition:
        params["slurm_partition"] = partition
    if gpus is not None:
        if gpus < 0:
            raise OfactlError(f"--slurm-gpus must be >= 0, found {gpus}")
        params["gpus_per_node"] = gpus
    if time is not None:
        params["timeout_min"] = parse_minutes(time)
    if mem is not None:
        params["mem_gb"] = parse_gb(mem)
    if cpus is not None:
        params["cpus_per_task"] = cpus
    return params


def parse_minutes(text: str | int) -> int:
    """SLURM's time formats (minutes, ``MM:SS``, ``H:MM:SS``, ``D-HH[:MM[:SS]]``) as whole minutes (rounded up)."""
    s = str(text).strip()
    try:
        days = 0
        if "-" in s:
            d, s = s.split("-", 1)
            days = int(d)
        parts = [int(p) for p in s.split(":")]
        if any(p < 0 for p in parts) or days < 0 or not 1 <= len(parts) <= 3:
            raise ValueError
        if "-" in str(text):
            h, m, sec = (parts + [0, 0])[:3]
        elif len(parts) == 1:
            h, m, sec = 0, parts[0], 0
        elif len(parts) == 2:
            h, m, sec = 0, parts[0], parts[1]
        else:
            h, m, sec = parts
    except ValueError:
        raise OfactlError(f"--slurm-time: cannot read {text!r}",
                          hint="minutes (90), H:MM:SS (1:30:00) or D-HH:MM:SS (1-00:00:00)") from None
    total = days * 1440 + h * 60 + m + (1 if sec else 0)
    if total <= 0:
        raise OfactlError(f"--slurm-time must be positive, found {text!r}")
    return total


def parse_gb(text: str | int | float) -> float:
    """``32G``, ``500M``, ``1T`` or a number of GB."""
    s = str(text).strip().upper().removesuffix("B")
    scale = {"K": 1 / 2**20, "M": 1 / 1024, "G": 1.0, "T": 1024.0}.get(s[-1:], None)
    try:
        value = float(s[:-1]) * scale if scale is not None else float(s)
    except ValueError:
        raise OfactlError(f"--slurm-mem: cannot read {text!r}", hint="e.g. 32G, 500M, or a number of GB") from None
    if value <= 0:
        raise OfactlError(f"--slurm-mem must be positive, found {text!r}")
    return value


__all__ = ["Inline", "JobDied", "LocalPool", "Submitit", "parse_gb", "parse_minutes", "require_submitit",
           "slurm_params"]
