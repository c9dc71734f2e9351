"""Sweep a downstream task across frame periods: one probe per (period, seed), the learning rate chosen on dev.

    >>> summary = run_sweep("sid", "/data/VoxCeleb1", model_dir, results="results.csv")
    >>> summary = run_sweep(..., launcher=LocalPool(jobs=4))            # 4 processes on this machine
    >>> summary = run_sweep(..., launcher=Submitit(folder, params=slurm_params(partition="gpu", gpus=1)))

For every period (default: :func:`default_periods`, log-spaced over the
model's calibrated range) the features are extracted once (cached, see
:mod:`ofactl.probe`), then every (period, seed, learning rate) is one job
(:class:`SweepJob`; the learning rates are a small log-spaced grid, by
default the task's rate times 0.1, 1 and 10).  When all learning rates of a
(period, seed) are back, the one with the best dev score (ties: the lower dev
loss) gives the point its rows (every test metric plus the dev primary
metric) with the chosen ``lr`` and the dev scores of the grid in ``note``.

A task without training (qbe) is scored once per period instead: no
learning-rate grid, only the first seed, ``lr`` empty.

``pooling="avg"`` sweeps the average-pooling baseline instead (model
``<name>+avgpool``), ``pooling="uniform"`` fixed-length pooling inside the
model (``<name>+uniform``); see :mod:`ofactl.probe`.

Where jobs run is the launcher's business (:mod:`ofactl.launch`): in this
process, in N local processes, or as a SLURM job array.  A job never writes
the results table: it leaves its result in a file of its own under
``<results>.jobs/`` (atomic rename); only this process (the driver) appends
rows, through :func:`ofactl.results.append_rows`, whose pending files and
exclusive-creation lock are safe on a network file system.

Resumable: a (model, task, period, seed, layer) that already has a test row
with status ``ok`` or ``infeasible`` is skipped, and a job whose result file
is there is not run again.  A failure (an error while extracting or training,
or a job process that dies) becomes ``status=failed`` rows with the error in
``note``, and the sweep goes on; a re-run retries only the failed jobs.

Modules: ``plan`` (:func:`plan_sweep`), ``jobs`` (:class:`SweepJob`,
:func:`run_job`), ``run`` (:func:`run_sweep`, :func:`execute`).
"""

from __future__ import annotations

from ofactl.sweep.jobs import SweepJob, jobs_dir, run_job
from ofactl.sweep.plan import SweepPlan, default_lrs, default_periods, finished, plan_sweep
from ofactl.sweep.run import SweepSummary, execute, run_sweep

__all__ = ["SweepJob", "SweepPlan", "SweepSummary", "default_lrs", "default_periods", "execute", "finished", "jobs_dir",
           "plan_sweep", "run_job", "run_sweep"]
