"""ofactl.malloc_tuning: the mallopt calls, the opt-out, other C libraries, and the effect on page faults."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from ofactl.malloc_tuning import ENV_VAR, KEEP_BYTES, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, keep_freed_memory


class FakeGlibc:
    def __init__(self, accepts: bool = True):
        self.calls: list[tuple[int, int]] = []
        self.accepts = accepts

    def mallopt(self, param, value) -> int:
        self.calls.append((param, value.value))
        return int(self.accepts)

    def gnu_get_libc_version(self) -> bytes:
        return b"2.36"


def test_raises_both_thresholds(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    libc = FakeGlibc()
    assert keep_freed_memory(libc)
    assert libc.calls == [(M_MMAP_THRESHOLD, KEEP_BYTES), (M_TRIM_THRESHOLD, KEEP_BYTES)]
    assert not keep_freed_memory(FakeGlibc(accepts=False))


def test_opt_out_and_other_c_libraries(monkeypatch):
    libc = FakeGlibc()
    monkeypatch.setenv(ENV_VAR, "system")
    assert not keep_freed_memory(libc) and libc.calls == []
    monkeypatch.delenv(ENV_VAR)

    class Musl:  # no mallopt knobs
        pass

    assert not keep_freed_memory(Musl())


SCRIPT = """
import resource, sys
import torch
from ofactl.malloc_tuning import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
n = 64 * 2**20 // 4
x, w = torch.randn(1, 1, n // 64), torch.randn(64, 1, 1)
counts = []
for _ in range(8):  # a layer's 64 MiB output and its activation, per batch (above glibc's mmap threshold)
    before = faults()
    h = torch.nn.functional.conv1d(x, w)
    g = torch.nn.functional.gelu(h)
    del h, g
    counts.append(faults() - before)
print(sum(counts[4:]))  # the steady state: batches 5 to 8
"""


@pytest.mark.skipif(platform.system() != "Linux" or not platform.libc_ver()[0] == "glibc", reason="glibc only")
def test_freed_tensor_memory_is_reused_instead_of_faulted_in_again():
    env = {**os.environ}
    env.pop(ENV_VAR, None)
    faults = {}
    for mode in ("system", "keep"):
        proc = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, env=env,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        faults[mode] = int(proc.stdout.split()[-1])
    assert faults["system"] > 4 * 16384, faults  # each batch faults at least one 64 MiB tensor in (4 KiB pages)
    assert faults["keep"] * 4 < faults["system"], faults  # 0 on an idle machine
