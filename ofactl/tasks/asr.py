"""``asr``: speech recognition on LibriSpeech (SUPERB ASR): 2-layer BiLSTM CTC over characters, WER.

Characters are the transcript's (upper case letters, apostrophe) with ``|``
as the word boundary; greedy CTC decoding; words are split at ``|``.
"""

import numpy as np

from ofactl.tasks.base import CTCTask, Metric, ratio

BOUNDARY = "|"


class SpeechRecognition(CTCTask):
    name = "asr"
    description = "speech recognition (LibriSpeech), 2-layer BiLSTM CTC over characters, WER (and CER)"
    layout = "librispeech"
    splits = ("train-clean-100", "dev-clean", "test-clean")
    metrics = (Metric("wer", False), Metric("cer", False))
    head_kind = "bilstm"
    lr = 1e-3
    batch_size = 16

    def label(self, utt):
        text = utt.labels.get("text")
        return " ".join(text.upper().split()) if text else None

    def tokens(self, label):
        return [BOUNDARY if c == " " else c for c in label]

    def utterance_stats(self, head, x, lengths, targets, vocab):
        from torchaudio.functional import edit_distance

        hyps = self.decode(head(x, lengths), lengths)
        rows = []
        for h, t in zip(hyps, targets):
            hc, tc = self.units(h, vocab), self.units(t, vocab)
            hw = "".join(hc).replace(BOUNDARY, " ").split()
            tw = "".join(tc).replace(BOUNDARY, " ").split()
            rows.append((edit_distance(hw, tw), len(tw), edit_distance(hc, tc), len(tc)))
        table = np.asarray(rows, dtype=np.float64).reshape(len(rows), 4)
        return dict(zip(("word_errors", "words", "char_errors", "chars"), table.T))

    def finish(self, totals):
        return {"wer": ratio(totals["word_errors"], totals["words"]),
                "cer": ratio(totals["char_errors"], totals["chars"])}


TASK = SpeechRecognition()
