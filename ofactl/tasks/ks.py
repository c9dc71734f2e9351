"""``ks``: keyword spotting on Speech Commands v0.01 (SUPERB KS): 12 classes, accuracy."""

from ofactl.tasks.base import ClassificationTask


class KeywordSpotting(ClassificationTask):
    name = "ks"
    description = "keyword spotting (Speech Commands v0.01, 12 classes), accuracy"
    layout = "speech_commands"
    splits = ("train", "dev", "test")
    fields = ("keyword",)
    lr = 1e-3


TASK = KeywordSpotting()
