"""Guidance segments for OFA pretraining: one table of segment END frames per utterance.

Frames are the CNN's 20 ms frames: frame ``t`` covers samples
``[320 t, 320 t + 400)`` of the 16 kHz utterance (window centre at
``(320 t + 200) / 16000`` s).  An utterance's segments are stored as strictly
increasing *inclusive* end frames ``e_1 < ... < e_K``; segment ``k`` covers
frames ``e_{k-1} + 1 .. e_k`` (``e_0 = -1``).  Frames after ``e_K`` belong to
no segment (no guidance target).

Where segments come from:

* :func:`compute_segments`: "HuBERT code" segments (Meng et al. 2022): k-means
  (:func:`fit_kmeans`, scikit-learn ``MiniBatchKMeans`` with fairseq's HuBERT
  label settings) on a teacher layer, then the duration-penalised dynamic
  programming segmentation of Kamper & van Niekerk 2021 (:func:`dp_segment`).
* :func:`import_alignments`: phone alignments (TSV, CTM, Praat TextGrid).

A :class:`SegmentTable` is saved as a small text file::

    # ofactl-segments v1 source=hubert-codes frame_period_ms=20 smoothing=30 ...
    utt-001<TAB>3 7 12 20
    utt-002<TAB>4 9

(header values are percent-encoded; ``#`` lines after the header are comments).
"""

from ofactl.segments.alignments import FORMATS, import_alignments, time_to_end_frame
from ofactl.segments.codes import compute_segments, dp_segment, fit_kmeans, segment_costs
from ofactl.period import HOP_SAMPLES
from ofactl.segments.table import DEFAULT_SMOOTHING, FRAME_PERIOD_MS, MAX_SEGMENT_FRAMES, WINDOW_SAMPLES, SegmentTable

__all__ = [
    "DEFAULT_SMOOTHING",
    "FORMATS",
    "FRAME_PERIOD_MS",
    "HOP_SAMPLES",
    "WINDOW_SAMPLES",
    "MAX_SEGMENT_FRAMES",
    "SegmentTable",
    "fit_kmeans",
    "segment_costs",
    "dp_segment",
    "compute_segments",
    "import_alignments",
    "time_to_end_frame",
]
