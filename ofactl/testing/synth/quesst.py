"""QUESST 2014: documents with inserted query terms, the queries, the language keys and the ground-truth RTTM."""

from __future__ import annotations

from pathlib import Path

from ofactl.testing.synth.common import (
    _STREAM_QUESST,
    LAYOUT_ROOTS,
    SAMPLE_RATE,
    VOCABULARY,
    _Plan,
    _rng,
    _Speaker,
    _write_text,
)


def _plan_quesst14(plan: _Plan, speakers: list[_Speaker], utterances: int, seed: int) -> None:
    """QUESST 2014 documents and queries (see the module docstring), from their own generators."""
    text = _rng(seed, _STREAM_QUESST, 0)
    jitter = _rng(seed, _STREAM_QUESST, 1)
    root = LAYOUT_ROOTS["quesst14"]
    n_queries = min(30, max(2, round(utterances / 20)))
    n_terms = 2 * n_queries
    n_docs = max(2 * n_terms + 4, min(400, round(utterances / 4)))
    long_words = [w for w in VOCABULARY if len(w) >= 5]
    reserved = [long_words[i] for i in text.permutation(len(long_words))[: 2 * n_terms]]
    terms = [f"{reserved[2 * k]} {reserved[2 * k + 1]}" for k in range(n_terms)]
    filler = [w for w in VOCABULARY if w not in set(reserved)]
    order = [speakers[i] for i in text.permutation(len(speakers))]
    n_query_voices = max(1, len(speakers) // 3)
    query_voices, doc_voices = order[:n_query_voices], order[n_query_voices:]
    holder: list[str | None] = [None] * n_docs
    for k, slot in enumerate(text.permutation(n_docs)[: 2 * n_terms]):  # every term in two documents
        holder[int(slot)] = terms[k // 2]
    for d in range(n_docs):
        words = [filler[i] for i in text.integers(0, len(filler), size=int(text.integers(4, 11)))]
        term = holder[d]
        at = int(text.integers(0, len(words) + 1))
        if term is not None:
            words[at:at] = term.split()
        doc_id = f"quesst14_{d + 1:05d}"
        voice = doc_voices[int(text.integers(0, len(doc_voices)))].voice
        job = plan.add("quesst14", f"{root}/Audio/{doc_id}.wav", " ".join(words), voice, jitter)
        plan.quesst_docs.append((doc_id, job, words, term, at))
    for part, folder, chosen in (("dev", "dev_queries", terms[:n_queries]), ("eval", "eval_queries", terms[n_queries:])):
        for q, term in enumerate(chosen, start=1):
            query_id = f"quesst14_{part}_{q:04d}"
            voice = query_voices[int(text.integers(0, len(query_voices)))].voice
            plan.add("quesst14", f"{root}/{folder}/{query_id}.wav", term, voice, jitter)
            plan.quesst_queries[part].append((query_id, term))


#: Audio SNIPS: slot values (lower case, spoken as written) and intent templates ({slot} fills one slot).


def _write_quesst14(plan: _Plan, results: list[tuple[int, list[str]]], stage: Path) -> None:
    """The language keys and the ground-truth RTTM (occurrence times estimated from character positions)."""
    root = LAYOUT_ROOTS["quesst14"]
    scoring = stage / root / "scoring"
    _write_text(scoring / "language_key_utterances.lst",
                [f"{root}/Audio/{doc_id}.wav nnenglish" for doc_id, *_ in plan.quesst_docs])
    for part, folder in (("dev", "dev_queries"), ("eval", "eval_queries")):
        queries = plan.quesst_queries[part]
        _write_text(scoring / f"language_key_{part}.lst", [f"{root}/{folder}/{q}.wav nnenglish" for q, _ in queries])
        by_term = {term: q for q, term in queries}
        lines = []
        for doc_id, job, words, term, at in plan.quesst_docs:
            if term not in by_term:
                continue
            seconds = results[job][0] / SAMPLE_RATE
            chars = len(" ".join(words))
            before = len(" ".join(words[:at])) + (1 if at else 0)
            begin, duration = seconds * before / chars, seconds * len(term) / chars
            lines.append(f"LEXEME {doc_id} 1 {begin:.3f} {duration:.3f} {by_term[term]} lex <NA> <NA>")
        _write_text(scoring / f"groundtruth_quesst14_{part}" / f"quesst14_{part}.rttm", lines)
