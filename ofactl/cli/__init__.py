"""The ``ofactl`` command line: parse -> one library call -> print a summary.

One module per command group; each registers on :data:`ofactl.cli.app.app`.
Nothing here imports torch: ``ofactl --help`` stays instant.
"""

from ofactl.cli.app import DEBUG_ENV_VAR, app, main
from ofactl.cli.options import DeviceOption, JsonOption, ModelOption, PeriodOption, QuietOption
from ofactl.cli import info as _info  # noqa: F401  (registers `ofactl info`)
from ofactl.cli import data as _data  # noqa: F401  (registers `ofactl data ...`)
from ofactl.cli import pretrain as _pretrain  # noqa: F401  (registers `ofactl pretrain`)
from ofactl.cli import segment as _segment  # noqa: F401  (registers `ofactl segment`)
from ofactl.cli import teacher as _teacher  # noqa: F401  (registers `ofactl teacher ...`)
from ofactl.cli import extract as _extract  # noqa: F401  (registers `ofactl calibrate`, `ofactl extract`)
from ofactl.cli import report as _report  # noqa: F401  (registers `ofactl profile`, `ofactl plot`)
from ofactl.cli import probe as _probe  # noqa: F401  (registers `ofactl probe`, `ofactl sweep`)
from ofactl.cli import compare as _compare  # noqa: F401  (registers `ofactl compare`)
from ofactl.cli import use as _use  # noqa: F401  (registers `ofactl use`)
from ofactl.cli import import_model as _import  # noqa: F401  (registers `ofactl import`)

__all__ = ["app", "main", "DEBUG_ENV_VAR", "DeviceOption", "JsonOption", "ModelOption", "PeriodOption", "QuietOption"]
