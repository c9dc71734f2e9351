"""The names of the downstream tasks, without importing them (their modules import torch).

``ofactl.tasks.TASKS`` holds the tasks themselves in this order; a test keeps the two equal.
"""

from __future__ import annotations

from ofactl.errors import OfactlError

__all__ = ["NOT_YET", "TASK_NAMES", "check_task_name"]

TASK_NAMES: tuple[str, ...] = ("ks", "ic", "sid", "er", "pr", "asr", "qbe", "sf", "st")

#: Tasks of SUPERB that ofactl does not run yet.
NOT_YET: tuple[str, ...] = ()


def check_task_name(name: str) -> str:
    """``name`` if it names a task; one clear error line otherwise."""
    if name in TASK_NAMES:
        return name
    if name in NOT_YET:
        raise OfactlError(f"task {name!r} is not supported yet", hint=f"supported: {', '.join(TASK_NAMES)}")
    raise OfactlError(f"unknown task {name!r}", hint=f"one of: {', '.join(TASK_NAMES)}")
