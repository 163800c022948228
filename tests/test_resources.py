"""Peak memory is the process's own: a child of a large parent does not inherit its size."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from core.base.resources import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]


def test_child_peak_excludes_the_parent_and_sees_its_own_allocation():
    big = np.ones(400 * 2**20 // 8)  # this process holds 400 MiB
    code = ("import json, numpy as np; from core.base.resources import peak_rss_mb; a = peak_rss_mb(); "
            "b = np.ones(200 * 2**20 // 8); print(json.dumps([a, peak_rss_mb()]))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    before, after = json.loads(out.stdout)
    assert before < 300 < peak_rss_mb(), (before, big.size)  # the child starts small, unlike ru_maxrss
    assert after - before > 190
