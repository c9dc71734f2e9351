"""ofactl: once-for-all sequence compression of self-supervised speech models.

Importing this package is cheap: torch is only imported by the submodules that
need it (``ofactl.cif``, ``ofactl.model``, ...), so ``ofactl --help`` is instant.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
