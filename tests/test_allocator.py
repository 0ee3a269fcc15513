"""glibc's allocator keeps numpy's large temporaries: counted in page faults, not seconds."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from kmidi_ingest import allocator
from tests.conftest import REPO

FAULTS = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    from kmidi_ingest import allocator
    if sys.argv[1] == "tuned":
        assert allocator.keep_freed_memory(environ={})
    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):  # the allocator's first growth is not what is measured
        np.ones((128, 2048), dtype=np.float32) + 1.0
    before = faults()
    for _ in range(100):  # 1 MiB arrays, made and dropped as the content evidence does
        np.ones((128, 2048), dtype=np.float32) + 1.0
    print(faults() - before)
    """
)


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], cwd=REPO, check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_arrays_are_reused_without_page_faults():
    untuned, tuned = _faults("default"), _faults("tuned")
    # by default every 1 MiB array is fresh memory: 256 pages, two arrays per round
    assert untuned >= 100 * 256
    assert tuned < untuned / 20


def test_a_users_own_malloc_settings_win():
    assert allocator.keep_freed_memory(environ={"MALLOC_TRIM_THRESHOLD_": "0"}) is False
    assert allocator.keep_freed_memory(environ={"MALLOC_MMAP_THRESHOLD_": "65536"}) is False
