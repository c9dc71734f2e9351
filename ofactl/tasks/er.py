"""``er``: emotion recognition on IEMOCAP (SUPERB ER: neu/hap/ang/sad, one fold), accuracy."""

from ofactl.tasks.base import ClassificationTask


class EmotionRecognition(ClassificationTask):
    name = "er"
    description = "emotion recognition (IEMOCAP, 4 classes, fold 1), accuracy"
    layout = "iemocap"
    splits = ("train", "dev", "test")
    fields = ("emotion",)
    lr = 1e-3


TASK = EmotionRecognition()
