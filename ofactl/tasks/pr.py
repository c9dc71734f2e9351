"""``pr``: phone recognition on LibriSpeech (SUPERB PR): a linear CTC probe over phones, phone error rate."""

from ofactl.tasks.base import CTCTask, Metric, ratio


class PhoneRecognition(CTCTask):
    name = "pr"
    description = "phone recognition (LibriSpeech with phone transcripts), PER"
    layout = "librispeech"
    splits = ("train-clean-100", "dev-clean", "test-clean")
    metrics = (Metric("per", False),)
    head_kind = "linear"
    lr = 1e-2
    lambda_lr = 1e-3

    def label(self, utt):
        phones = utt.labels.get("phones")
        return list(phones) if phones else None

    def tokens(self, label):
        return list(label)

    def finish(self, totals):
        return {"per": ratio(totals["errors"], totals["ref"])}

    def no_labels(self, data, split: str):
        from ofactl.errors import OfactlError

        return OfactlError(
            f"{data}: split {split!r} has no phone transcripts (no <speaker>-<chapter>.phones.txt beside the "
            ".trans.txt files)",
            hint="LibriSpeech ships no phones: write one <speaker>-<chapter>.phones.txt per chapter folder, lines "
                 "'<utt-id> <phone> <phone> ...' (from a G2P or forced aligner); ofactl's synthetic corpus has them")


TASK = PhoneRecognition()
