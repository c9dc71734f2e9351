"""``asr``: speech recognition on LibriSpeech (SUPERB ASR): 2-layer BiLSTM CTC over characters, WER.

Characters are the transcript's (upper case letters, apostrophe) with ``|``
as the word boundary; greedy CTC decoding; words are split at ``|``.
"""

from ofactl.tasks.base import CTCTask, Metric

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

    def score(self, head, x, lengths, targets, vocab):
        from torchaudio.functional import edit_distance

        hyps = self.decode(head(x, lengths), lengths)
        stats = {"word_errors": 0.0, "words": 0.0, "char_errors": 0.0, "chars": 0.0}
        for h, t in zip(hyps, targets):
            hc, tc = self.units(h, vocab), self.units(t, vocab)
            hw = "".join(hc).replace(BOUNDARY, " ").split()
            tw = "".join(tc).replace(BOUNDARY, " ").split()
            stats["word_errors"] += edit_distance(hw, tw)
            stats["words"] += len(tw)
            stats["char_errors"] += edit_distance(hc, tc)
            stats["chars"] += len(tc)
        return stats

    def finish(self, totals):
        nan = float("nan")
        return {"wer": totals["word_errors"] / totals["words"] if totals.get("words") else nan,
                "cer": totals["char_errors"] / totals["chars"] if totals.get("chars") else nan}


TASK = SpeechRecognition()
