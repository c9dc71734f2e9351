"""Colours, markers, sizes and the known tasks and metrics of the trade-off figures."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass


OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "D", "^", "v", "<", ">", "p")
FIGURE_SUFFIXES = (".png", ".pdf", ".svg")
PANEL_WIDTH_IN = 3.3
PANEL_HEIGHT_IN = 2.5
MAX_COLUMNS = 3
FONT_PT = 8
SMALL_PT = 7


@dataclass(frozen=True)
class TaskStyle:
    title: str
    log_x: bool


#: Known tasks (SUPERB subset and the compute profile), in panel order.
TASKS: dict[str, TaskStyle] = {
    "pr": TaskStyle("PR (phoneme recognition)", False),
    "asr": TaskStyle("ASR (speech recognition)", False),
    "ks": TaskStyle("KS (keyword spotting)", True),
    "ic": TaskStyle("IC (intent classification)", True),
    "sid": TaskStyle("SID (speaker identification)", True),
    "er": TaskStyle("ER (emotion recognition)", True),
    "qbe": TaskStyle("QbE (query by example)", False),
    "sf": TaskStyle("SF (slot filling)", False),
    "st": TaskStyle("ST (speech translation)", False),
    "profile": TaskStyle("compute profile", True),
}


@dataclass(frozen=True)
class MetricStyle:
    label: str
    unit: str = ""
    percent: bool = False  # fractions are shown in %
    scale: float = 1.0


METRICS: dict[str, MetricStyle] = {
    "accuracy": MetricStyle("accuracy", percent=True),
    "per": MetricStyle("PER", percent=True),
    "wer": MetricStyle("WER", percent=True),
    "cer": MetricStyle("CER", percent=True),
    "f1": MetricStyle("slot F1", percent=True),
    "slot_f1": MetricStyle("slot F1", percent=True),
    "slot_type_f1": MetricStyle("slot type F1", percent=True),
    "slot_value_cer": MetricStyle("slot value CER", percent=True),
    "mtwv": MetricStyle("MTWV"),
    "bleu": MetricStyle("BLEU"),
    "macs_per_s": MetricStyle("MACs", "GMAC per s of audio", scale=1e-9),
}


def _metric_style(metric: str) -> MetricStyle:
    if metric in METRICS:
        return METRICS[metric]
    if metric.startswith("throughput_b") and metric[len("throughput_b"):].isdigit():
        return MetricStyle(f"throughput, batch {metric[len('throughput_b'):]}", "audio s per s")
    return MetricStyle(metric)


Warn = Callable[[str], None]


def _default_warn(message: str) -> None:
    warnings.warn(message, UserWarning, stacklevel=3)
