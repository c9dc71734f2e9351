"""``iemocap``: IEMOCAP for emotion recognition, SUPERB ER protocol.

Files read::

    <root>/Session{1..5}/dialog/EmoEvaluation/<dialog>.txt     "[start - end]\\t<utt>\\t<emo>\\t[v, a, d]"
    <root>/Session{1..5}/sentences/wav/<dialog>/<utt>.wav
    <root>/meta_data/Session{fold}/train_meta_data.json        optional: s3prl's split files
    <root>/meta_data/Session{fold}/test_meta_data.json          (or the ``meta_dir`` option)

``<root>`` is ``IEMOCAP_full_release`` or its parent.  Labels follow SUPERB:
``neu``, ``hap``, ``ang``, ``sad`` with ``exc`` merged into ``hap``; every
other category is left out (not a problem).  ``emotion`` and ``session`` are
the labels; the speaker is the session plus the utterance's gender letter
(``Ses01F``).

Folds (leave one session out), as s3prl does (``s3prl/downstream/emotion/expert.py``
and ``s3prl/problem/common/superb_er.py`` ``iemocap_for_superb``):
``fold=n`` puts Session n in ``test``; the other four sessions are split
80 / 20 into ``train`` / ``dev`` by ``torch.utils.data.random_split`` after
``torch.manual_seed(0)``, i.e. ``torch.randperm(N)`` with seed 0 over the list
in s3prl's ``train_meta_data.json`` order.  **That order comes from s3prl's
own split files** (``s3prl/downstream/emotion/meta_data`` or the Hugging Face
dataset ``s3prl/iemocap_split``); put their ``meta_data`` folder in ``<root>``
or pass ``meta_dir`` to reproduce SUPERB's dev set exactly.  Without them the
list is taken in sorted id order: same test set, same sizes, a different (but
fixed) train/dev assignment.
"""

from __future__ import annotations

import json
from pathlib import Path

from ofactl.data.layouts.base import (
    DirIndex, Problem, Utterance, abspath, files_with_suffix, finish, first_existing,
)
from ofactl.errors import OfactlError

NAME = "iemocap"
DESCRIPTION = ("IEMOCAP_full_release/Session{1..5}/sentences/wav/<dialog>/<utt>.wav + "
               "Session{n}/dialog/EmoEvaluation/<dialog>.txt")
SESSIONS = (1, 2, 3, 4, 5)
EMOTIONS = {"neu": "neu", "hap": "hap", "exc": "hap", "ang": "ang", "sad": "sad"}
VALID_RATIO = 0.2


def find_root(path: Path) -> Path | None:
    return first_existing([path, path / "IEMOCAP_full_release", path / "IEMOCAP"],
                          lambda c: any((c / f"Session{n}" / "dialog" / "EmoEvaluation").is_dir() for n in SESSIONS))


def read(path: Path, *, split=None, fold: int = 1, meta_dir: str | Path | None = None):
    """Read IEMOCAP with fold ``fold`` (1..5) as the test session; see the module docstring."""
    try:
        number = int(fold)
    except (TypeError, ValueError):
        number = -1
    if number not in SESSIONS:
        raise OfactlError(f"IEMOCAP fold must be 1..5 (the session used as test), not {fold!r}", hint="e.g. fold=1")
    fold = number
    root = find_root(path)
    if root is None:
        raise OfactlError(f"{path}: no IEMOCAP Session*/dialog/EmoEvaluation folders found",
                          hint=f"expected {DESCRIPTION}")
    index = DirIndex()
    labelled: dict[str, Utterance] = {}
    problems: list[Problem] = []
    for session in SESSIONS:
        eval_dir = root / f"Session{session}" / "dialog" / "EmoEvaluation"
        for txt in files_with_suffix(eval_dir, [".txt"]):
            dialog = txt.stem
            for uid, emotion in _read_evaluation(txt):
                label = EMOTIONS.get(emotion)
                if label is None:
                    continue
                audio = root / f"Session{session}" / "sentences" / "wav" / dialog / f"{uid}.wav"
                labelled[uid] = Utterance(id=uid, path=abspath(audio), split="", speaker=_speaker(uid),
                                          labels={"emotion": label, "session": session})

    meta = Path(meta_dir) if meta_dir is not None else root / "meta_data"
    train_json = meta / f"Session{fold}" / "train_meta_data.json"
    test_json = meta / f"Session{fold}" / "test_meta_data.json"
    if train_json.is_file() and test_json.is_file():
        pool_ids, test_ids = _json_ids(train_json), _json_ids(test_json)
    elif meta_dir is not None:
        raise OfactlError(f"{meta}: no Session{fold}/train_meta_data.json and test_meta_data.json",
                          hint="meta_dir is s3prl's downstream/emotion/meta_data folder")
    else:
        pool_ids = sorted(uid for uid, u in labelled.items() if u.labels["session"] != fold)
        test_ids = sorted(uid for uid, u in labelled.items() if u.labels["session"] == fold)

    import torch  # only for torch.randperm, to pick exactly the indices s3prl picks

    n_train = int((1 - VALID_RATIO) * len(pool_ids))
    order = torch.randperm(len(pool_ids), generator=torch.Generator().manual_seed(0)).tolist()
    assign = {pool_ids[i]: ("train" if k < n_train else "dev") for k, i in enumerate(order)}
    assign.update({uid: "test" for uid in test_ids})
    utterances = []
    for uid, part in assign.items():
        if uid not in labelled:
            continue
        if not index.exists(labelled[uid].path):  # after the split, so one lost file moves no other
            problems.append(Problem(labelled[uid].path, "missing", "labelled in EmoEvaluation but not on disk", uid))
            continue
        utterances.append(_with_split(labelled[uid], part))
    utterances.sort(key=lambda u: ({"train": 0, "dev": 1, "test": 2}[u.split], u.id))
    expected = {"train": root, "dev": root, "test": root / f"Session{fold}"}
    return finish(NAME, root, utterances, problems, split=split, expected=expected)


def _read_evaluation(txt: Path) -> list[tuple[str, str]]:
    """(utterance id, category) for each ``[start - end]`` line of an EmoEvaluation file."""
    rows = []
    with open(txt, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith("["):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) >= 3:
                rows.append((fields[1].strip(), fields[2].strip()))
    return rows


def _json_ids(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return [Path(item["path"]).stem for item in json.load(f)["meta_data"]]


def _speaker(uid: str) -> str:
    """``Ses01F_impro01_M003`` -> ``Ses01M`` (the dialog name's letter is the other actor's for half the lines)."""
    last = uid.rsplit("_", 1)[-1]
    return uid[:5] + (last[:1] if last[:1] in ("F", "M") else uid[5:6])


def _with_split(u: Utterance, part: str) -> Utterance:
    return Utterance(id=u.id, path=u.path, split=part, speaker=u.speaker, labels=u.labels)
