"""A SentencePiece model trained on the training targets: the target units of the ``st`` task.

As in s3prl's ST recipe (``prepare_gen_fairseq_vocab.py``), the model is
trained on the train split's translations only, with ``model_type="char"``
by default (SUPERB's setting; ``"unigram"`` and ``"bpe"`` work too), full
character coverage and no sentence left out.  Training runs in memory, is
deterministic, and the model travels as its serialized bytes (picklable, so
that loader workers and saved probe states can hold it).

Ids: 0 padding, 1 unknown, 2 begin of sentence, 3 end of sentence, then the pieces.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from ofactl.tasks.bleu import require

PAD, UNK, BOS, EOS = 0, 1, 2, 3


class Subwords:
    """A trained SentencePiece model: ``encode(text) -> ids`` and ``decode(ids) -> text`` (detokenised)."""

    def __init__(self, model: bytes, max_target_len: int = 0):
        self.model = model
        self.max_target_len = max_target_len  # the longest training target, in pieces
        self._sp = None

    @classmethod
    def train(cls, texts: Sequence[str], model_type: str = "char", vocab_size: int | None = None) -> "Subwords":
        """Train on ``texts`` (the training targets).  ``vocab_size`` defaults to every character (char) or 1000."""
        spm = require("sentencepiece")
        texts = [t for t in texts if t]
        if not texts:
            raise ValueError("no training text for the SentencePiece model")
        chars = len({c for t in texts for c in t if not c.isspace()}) + 1  # + the word-boundary piece
        if vocab_size is None:
            vocab_size = chars + 4 if model_type == "char" else 1000
        out = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(texts), model_writer=out, model_type=model_type, vocab_size=vocab_size,
            character_coverage=1.0, hard_vocab_limit=False, pad_id=PAD, unk_id=UNK, bos_id=BOS, eos_id=EOS,
            max_sentence_length=1 << 16, input_sentence_size=0, shuffle_input_sentence=False, num_threads=1,
            minloglevel=2)
        model = cls(out.getvalue())
        model.max_target_len = max(len(model.encode(t)) for t in texts)
        return model

    @property
    def processor(self):
        if self._sp is None:
            spm = require("sentencepiece")
            self._sp = spm.SentencePieceProcessor(model_proto=self.model)
        return self._sp

    def __len__(self) -> int:
        return int(self.processor.get_piece_size())

    def encode(self, text: str) -> list[int]:
        return list(self.processor.encode(text, out_type=int))

    def decode(self, ids: Sequence[int]) -> str:
        return str(self.processor.decode([int(i) for i in ids if int(i) > EOS]))

    def __getstate__(self):
        return {"model": self.model, "max_target_len": self.max_target_len}

    def __setstate__(self, state):
        self.model, self.max_target_len, self._sp = state["model"], state["max_target_len"], None
