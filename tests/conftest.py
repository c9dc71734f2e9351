"""Test-wide settings: one torch thread per pytest-xdist worker (2 cores, 2 workers)."""

from __future__ import annotations

import os

import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
