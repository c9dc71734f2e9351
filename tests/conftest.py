"""Test-wide settings.

With ``CI`` set (``.ci/run`` sets it) hypothesis is derandomized: the same
examples every run.

Under pytest-xdist (2 workers on 2 cores) each worker, and every process a
test starts (the CLI, torchrun ranks), uses one torch thread: two OpenMP
thread pools spinning on two cores slow each other down by an order of
magnitude.

Every test runs with a fresh temporary folder as its working directory (the
checkout is never written to) and without ``OFACTL_MODEL`` from the caller's
environment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import settings

REPO = Path(__file__).resolve().parent.parent

# CI (CI set, as .ci/run does): property tests draw the same examples every run, so a landing never depends on
# a lucky draw; locally they explore new examples each run.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tests import layout_fixtures

from probe_fixtures import calibrated_model, synth_corpus  # noqa: E402,F401  (session fixtures)


@pytest.fixture(autouse=True)
def _outside_the_checkout(tmp_path_factory, monkeypatch):
    """Every test runs in a folder of its own, never in the checkout: a command that writes where it runs
    (``pretrain`` records ``ofactl.toml``, ``probe`` a results table) must not touch the user's working tree."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    monkeypatch.delenv("OFACTL_MODEL", raising=False)
    before = (REPO / "ofactl.toml").exists()  # a workspace file of the developer's own is left alone
    yield
    assert before or not (REPO / "ofactl.toml").exists(), "this test wrote ofactl.toml into the checkout"
