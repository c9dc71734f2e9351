"""Downstream tasks (the nine SUPERB tasks of the paper) probed on frozen ofactl features.

:data:`TASKS` maps each task name to its :class:`~ofactl.tasks.base.Task`
(one module per task; what a task is in :mod:`ofactl.tasks.base`, the probe
heads in :mod:`ofactl.tasks.heads`, the training loop in :mod:`ofactl.tasks.loop`).  ``qbe`` has no training
(``Task.trainable`` False: subsequence DTW, scored directly).  ``st`` is the one
sequence-to-sequence task (a transformer encoder-decoder, BLEU).
"""

from __future__ import annotations

from ofactl.task_names import NOT_YET, check_task_name
from ofactl.tasks import asr, er, ic, ks, pr, sid
from ofactl.tasks import qbe
from ofactl.tasks import sf, st
from ofactl.tasks.base import Metric, Task

TASKS: dict[str, Task] = {
    "ks": ks.TASK,
    "ic": ic.TASK,
    "sid": sid.TASK,
    "er": er.TASK,
    "pr": pr.TASK,
    "asr": asr.TASK,
    "qbe": qbe.TASK,
    "sf": sf.TASK,
    "st": st.TASK,
}



def get_task(name: str) -> Task:
    """The task called ``name``; one clear error line otherwise."""
    return TASKS[check_task_name(name)]


__all__ = ["Metric", "NOT_YET", "TASKS", "Task", "get_task"]
