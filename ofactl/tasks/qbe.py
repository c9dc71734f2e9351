"""``qbe``: query-by-example spoken term detection on QUESST 2014 (SUPERB QbE), MTWV; no training.

The probe is SUPERB's (s3prl ``quesst14_dtw``): every query is searched in
every document by subsequence DTW (:mod:`ofactl.dtw`) on the frozen
features, each dimension standardised with the documents' mean and
standard deviation, frame distance cosine.  A trial's detection score is
the negative length-normalised path cost, z-normalised per query over the
documents (as s3prl does before it writes its detections, so that one
threshold serves every query).  Metrics (:mod:`ofactl.twv`, QUESST 2014's
cost model): ``mtwv``, the TWV at the best threshold of the split itself,
and ``atwv``, the test TWV at the threshold that gave the dev MTWV (on the
dev split that is the dev MTWV itself).

Splits: ``docs`` (the search collection, shared), ``dev`` (dev queries),
``test`` (the official eval queries).  A query's ground truth is the
``matches`` label of the ``quesst14`` layout (the RTTM files).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ofactl.errors import OfactlError
from ofactl.tasks.base import Example, Metric, Task, ratio

_TRUTH = {"dev": "dev", "test": "eval"}


class QueryByExample(Task):
    name = "qbe"
    description = "query-by-example spoken term detection (QUESST 2014, English), MTWV; subsequence DTW, no training"
    layout = "quesst14"
    splits = ("docs", "dev", "test")
    metrics = (Metric("mtwv", True), Metric("atwv", True))
    trainable = False

    def label(self, utt):
        """Documents: ``()``; queries: the sorted ids of the documents containing them (None without ground truth)."""
        if utt.labels.get("role") == "document":
            return ()
        matches = utt.labels.get("matches")
        return None if matches is None else tuple(matches)

    def vocabulary(self, train_labels):
        return None

    def encode(self, label, vocab):
        return label

    def no_labels(self, data, split: str) -> OfactlError:
        if split in _TRUTH:
            from ofactl.data.layouts.quesst14 import find_root

            root = find_root(Path(data))
            part = _TRUTH[split]
            rttm = Path("scoring") / f"groundtruth_quesst14_{part}" / f"quesst14_{part}.rttm"
            if root is not None and not (root / rttm).is_file():
                return OfactlError(f"{root}: no ground truth for the {part} queries ({rttm} not found)",
                                   hint="QUESST 2014 ships it in quesst14Database/scoring; restore that folder "
                                        "from the archive")
        return super().no_labels(data, split)

    # -- scoring without training
    def scores(self, docs: Sequence[Example], queries: Sequence[Example], upstream=None,
               docs_per_chunk: int = 256) -> np.ndarray:
        """Z-normalised detection scores, ``(queries, documents)``, of features standardised by ``upstream``.

        The queries are held; the documents are read ``docs_per_chunk`` at a
        time (stored features are never all in memory)."""
        from ofactl.dtw import search
        from ofactl.stream import load

        def prepared(examples, kind):
            out = []
            for e in examples:
                x = load(e.inputs)
                if x.ndim != 2 or x.shape[0] == 0:
                    raise OfactlError(f"{kind} {e.id} has no feature frames",
                                      hint="its audio is empty or too short for this period; remove it from the "
                                           "language_key list, or probe a shorter period")
                if upstream is not None:
                    x = (x.float() - upstream.mean) / upstream.std
                out.append(x)
            return out

        held = prepared(queries, "query")
        parts = [search(held, prepared(docs[i:i + docs_per_chunk], "document"))
                 for i in range(0, len(docs), docs_per_chunk)]
        cost = np.concatenate(parts, axis=1) if parts else np.zeros((len(queries), 0))
        score = -cost
        std = score.std(axis=1, keepdims=True)
        return (score - score.mean(axis=1, keepdims=True)) / np.maximum(std, 1e-9)

    def truth(self, docs: Sequence[Example], queries: Sequence[Example]) -> np.ndarray:
        index = {e.id: j for j, e in enumerate(docs)}
        t = np.zeros((len(queries), len(docs)), dtype=bool)
        for i, q in enumerate(queries):
            for doc_id in q.target:
                if doc_id in index:
                    t[i, index[doc_id]] = True
        return t

    def score_splits(self, examples: dict[str, list[Example]], upstream=None):
        """Dev and test metrics (roles ``train`` = documents, ``dev``, ``test``), and the test queries'
        :class:`~ofactl.outcomes.Outcomes` (per scored query: its TWV term at every candidate
        threshold of the test split, ``twv_curve``, and at the dev threshold, ``twv_at_dev``)."""
        from ofactl.outcomes import Outcomes
        from ofactl.twv import candidate_thresholds, mtwv, query_terms, twv

        docs = examples["train"]
        result = {}
        for role in ("dev", "test"):
            queries = examples[role]
            truth = self.truth(docs, queries)
            if not truth.any():
                split = self.splits[("train", "dev", "test").index(role)]
                raise OfactlError(f"no {split} query occurs in any document, so MTWV is undefined",
                                  hint="check the ground-truth RTTM against scoring/language_key_utterances.lst")
            scores = self.scores(docs, queries, upstream)
            result[role] = (scores, truth, *mtwv(scores, truth))
        dev_scores, dev_truth, dev_mtwv, dev_threshold = result["dev"]
        test_scores, test_truth, test_mtwv, _ = result["test"]
        dev = {"mtwv": dev_mtwv, "atwv": dev_mtwv, "threshold": dev_threshold}
        test = {"mtwv": test_mtwv, "atwv": twv(test_scores, test_truth, dev_threshold), "threshold": dev_threshold}
        curve, scored = query_terms(test_scores, test_truth, candidate_thresholds(test_scores, test_truth))
        at_dev, _ = query_terms(test_scores, test_truth, [dev_threshold])
        ids = [q.id for q, keep in zip(examples["test"], scored) if keep]
        outcomes = Outcomes(self.name, ids, {"twv_curve": curve, "twv_at_dev": at_dev[:, 0], "n": np.ones(len(ids))})
        return dev, test, outcomes

    def finish(self, totals):
        """MTWV and ATWV from summed per-query terms (see :meth:`score_splits`); vectorised."""
        from ofactl.twv import mtwv_from_terms

        return {"mtwv": mtwv_from_terms(totals["twv_curve"], totals["n"]),
                "atwv": ratio(totals["twv_at_dev"], totals["n"])}


TASK = QueryByExample()

__all__ = ["QueryByExample", "TASK"]
