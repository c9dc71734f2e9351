"""``st``: speech translation on CoVoST 2 En->De (SUPERB ST): a transformer encoder-decoder, BLEU.

The SUPERB protocol as s3prl's ST recipe runs it (``downstream/speech_translation``):

* text: each split's pairs pass s3prl's clean-up. The translation is
  normalised with Moses' punctuation normaliser for the target language
  (sacremoses, with unicode punctuation replaced and control characters
  removed, then `` .``, `` ?``, `` ,`` and `` '`` glued back); the
  transcript is normalised the same way, lower-cased and stripped of
  punctuation except apostrophes and hyphens.  A pair with an empty side,
  or whose word counts differ by more than a factor of five, is left out
  (``prepare_clean_paired_corpus.py --min 1 --ratio 5``), on every split;
* features: the last layer, a chosen one (``--layer N``) or SUPERB's learned
  weighted sum of every layer (``--layer weighted``, :mod:`ofactl.tasks.weighted`);
* targets: a SentencePiece model (character pieces, as SUPERB's) trained on
  the train split's translations (:mod:`ofactl.tasks.subwords`);
* probe: the encoder-decoder of :mod:`ofactl.tasks.seq2seq` (fairseq's
  ``s2t_transformer`` with 3 + 3 layers), trained with label-smoothed
  (0.1) cross entropy, Adam at 2e-3 with a linear warm-up and an
  inverse-square-root decay, gradients clipped at norm 10;
* decoding: beam search with 20 beams, at most 400 pieces (capped at twice
  the longest training target plus ten, which no sensible hypothesis
  reaches);
* score: sacreBLEU's corpus BLEU on the detokenised hypotheses against the
  normalised references: 13a tokeniser, case-sensitive
  (:mod:`ofactl.tasks.bleu`).  Its sufficient statistics are kept per
  utterance, so bootstrap intervals and paired comparisons work as for the
  other tasks.

Dev BLEU (the same beam search) picks the epoch, as for every task here.
"""

from __future__ import annotations

import math
import string
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from ofactl.tasks.base import Metric, Task
from ofactl.tasks.bleu import STATS, bleu, require, sentence_stats
from ofactl.tasks.seq2seq import Seq2SeqConfig, Seq2SeqHead, beam_search, teacher_forcing
from ofactl.tasks.subwords import PAD, Subwords

#: Packages the task needs (the ``st`` extra).
REQUIRES = ("sentencepiece", "sacrebleu", "sacremoses")
_PUNCTUATION = set(string.punctuation) - set("'-")
MAX_RATIO = 5.0


class Target(list):
    """The piece ids of a translation (a plain list for the loss) that also carry its reference text."""

    text: str = ""


@lru_cache(maxsize=8)
def _normaliser(lang: str):
    sacremoses = require("sacremoses")
    return sacremoses.MosesPunctNormalizer(lang=lang, pre_replace_unicode_punct=True, post_remove_control_chars=True)


def normalise(text: str, lang: str) -> str:
    """s3prl's ``prepare_normalize_tsv.py --normalize`` of one sentence."""
    text = _normaliser(lang).normalize(text)
    for c in ".?,'":
        text = text.replace(f" {c}", c)
    return text.replace("do n't", "don't")


def normalise_source(text: str, lang: str) -> str:
    """The transcript as s3prl keeps it: normalised, punctuation (but ``'`` and ``-``) removed, lower case."""
    text = "".join(c for c in normalise(text, lang) if c not in _PUNCTUATION)
    return " ".join(text.split()).lower()


def keep_pair(source: str, target: str, ratio: float = MAX_RATIO) -> bool:
    """``prepare_clean_paired_corpus.py --min 1 --ratio 5``: both sides have words, within a factor of ``ratio``."""
    a, b = len(source.split()), len(target.split())
    return a >= 1 and b >= 1 and a / b <= ratio and b / a <= ratio


class SpeechTranslation(Task):
    name = "st"
    description = "speech translation (CoVoST 2 En->De), transformer encoder-decoder, BLEU (sacreBLEU)"
    layout = "covost2"
    splits = ("train", "dev", "test")
    metrics = (Metric("bleu", True),)
    lr = 2e-3
    batch_size = 16
    lambda_lr = 1e-2
    clip_norm = 10.0
    label_smoothing = 0.1
    beam = 20
    max_len = 400
    #: warm-up steps: SUPERB's 10000, at most four epochs of the training set
    warmup_steps = 10_000
    warmup_epochs = 4
    piece_type = "char"

    def __init__(self, config: Seq2SeqConfig = Seq2SeqConfig(), **overrides):
        self.config = config
        for key, value in overrides.items():
            if not hasattr(type(self), key):
                raise TypeError(f"SpeechTranslation has no setting {key!r}")
            setattr(self, key, value)

    def check_requirements(self) -> None:
        for module in REQUIRES:
            require(module, self.name)

    # -- labels
    def label(self, utt):
        src, tgt = utt.labels.get("sentence"), utt.labels.get("translation")
        if not src or not tgt:
            return None
        target = normalise(tgt, utt.labels.get("tgt_lang") or "de")
        source = normalise_source(src, utt.labels.get("src_lang") or "en")
        return target if keep_pair(source, target) else None

    def vocabulary(self, train_labels):
        return Subwords.train(list(train_labels), model_type=self.piece_type)

    def encode(self, label, vocab):
        target = Target(vocab.encode(label))
        target.text = label
        return target

    # -- model
    def head(self, in_dim, vocab):
        return Seq2SeqHead(in_dim, len(vocab), self.config)

    def schedule(self, optimizer, steps_per_epoch):
        warmup = max(1, min(self.warmup_steps, self.warmup_epochs * steps_per_epoch))

        def factor(step: int) -> float:  # step counts updates done; the rate of update step + 1
            n = step + 1
            return n / warmup if n <= warmup else math.sqrt(warmup / n)

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def loss(self, head, x, lengths, targets):
        prefix, gold = teacher_forcing(targets, x.device)
        logits = head(x, lengths, prefix)
        return nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), gold.reshape(-1),
                                           ignore_index=PAD, label_smoothing=self.label_smoothing)

    def decode_limit(self, vocab) -> int:
        return max(1, min(self.max_len, 2 * int(getattr(vocab, "max_target_len", 0) or self.max_len) + 10))

    def translate(self, head, x, lengths, vocab) -> list[str]:
        """Detokenised hypotheses of a batch (beam search)."""
        was = head.training
        head.eval()
        ids = beam_search(head, x, lengths, self.beam, self.decode_limit(vocab))
        head.train(was)
        return [vocab.decode(h) for h in ids]

    def utterance_stats(self, head, x, lengths, targets, vocab):
        hyps = self.translate(head, x, lengths, vocab)
        refs = [t.text if isinstance(t, Target) else vocab.decode(t) for t in targets]
        return {k: np.asarray(v, dtype=np.float64) for k, v in sentence_stats(hyps, refs).items()}

    def finish(self, totals):
        return {"bleu": bleu({k: totals[k] for k in STATS})}


TASK = SpeechTranslation()
