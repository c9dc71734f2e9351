"""``ic``: intent classification on Fluent Speech Commands (SUPERB IC).

One head whose output is split into action, object and location logits
(one cross-entropy each, summed, as s3prl does); a hit needs all three right.
"""

from ofactl.tasks.base import ClassificationTask


class IntentClassification(ClassificationTask):
    name = "ic"
    description = "intent classification (Fluent Speech Commands), accuracy (action, object and location all right)"
    layout = "fluent"
    splits = ("train", "dev", "test")
    fields = ("action", "object", "location")
    lr = 1e-3


TASK = IntentClassification()
