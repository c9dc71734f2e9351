"""``sid``: speaker identification on VoxCeleb1 (SUPERB SID, closed set), accuracy."""

from ofactl.tasks.base import ClassificationTask


class SpeakerIdentification(ClassificationTask):
    name = "sid"
    description = "speaker identification (VoxCeleb1 iden_split), accuracy"
    layout = "voxceleb1"
    splits = ("train", "dev", "test")
    fields = ("speaker",)
    lr = 1e-3


TASK = SpeakerIdentification()
