"""Test-only fault injection: kill this process at a named point, so crash windows are tested without timing.

``OFACTL_FAULT`` holds a comma-separated list of point names; a process that
reaches :func:`point` with one of them sends itself SIGKILL (as a scheduler's
kill or the OOM killer would).  Unset, :func:`point` does nothing.  Points:

* ``sweep-job:<point>:<lr>`` - a sweep job, after training, before its result file is written
  (``<point>`` as in :attr:`ofactl.sweep.SweepJob.point`, ``<lr>`` as ``lr0.001`` or ``untrained``).
* ``results-merge`` - :func:`ofactl.results.merge_pending`, after appending to the table, before deleting the
  pending files it merged.
* ``features-<stage>`` - a feature merge's crash windows (``merge:copied-part``, ``merge:tmp-written``,
  ``merge:marked``, ``merge:replaced``; :mod:`ofactl.features`).
* ``atomic-write:<file name>`` - :func:`ofactl.atomic.atomic_write`, with the temporary file written and
  fsynced, before the rename (e.g. ``atomic-write:model.pt``: a checkpoint write killed half-way).
"""

from __future__ import annotations

import os
import signal

ENV = "OFACTL_FAULT"


def point(name: str) -> None:
    """Die here when ``OFACTL_FAULT`` names this point."""
    wanted = os.environ.get(ENV)
    if wanted and name in {w.strip() for w in wanted.split(",")}:
        os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["ENV", "point"]
