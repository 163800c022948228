"""The README's scvi-tools → FeatureLens → scanpy example runs as written.

The bash block that contains ``--scvi-model`` is taken out of README.md and run unchanged with
bash in a fresh folder whose ``data/`` is the repository's (the block reads the shipped PBMC
file by the path a user at the repository root has), with this checkout's ``core`` first on the
path and this interpreter's ``python`` and ``featurelens`` first on PATH.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("scvi", reason="scvi-tools is the optional extra featurelens[scvi] (make test installs it)")
pytest.importorskip("scanpy", reason="the example plots with scanpy")

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def readme_scvi_block() -> str:
    text = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", text, flags=re.S) if "--scvi-model" in b]
    assert len(blocks) == 1, "README.md must hold exactly one bash block with --scvi-model"
    return blocks[0]


def test_readme_block_is_at_most_ten_lines():
    assert len(readme_scvi_block().strip().splitlines()) <= 10


def test_readme_scvi_example_runs_as_written(tmp_path):
    import anndata as ad

    (tmp_path / "data").symlink_to(ROOT / "data", target_is_directory=True)
    (tmp_path / "example.sh").write_text(readme_scvi_block())
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "MPLBACKEND": "Agg",
           "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "example.sh"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    print(f"\nREADME scvi-tools example: {seconds:.0f} s")
    png = tmp_path / "analyses" / "pbmc-features.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    adata = ad.read_h5ad(tmp_path / "analyses" / "pbmc-features.h5ad")
    cols = [c for c in adata.obs.columns if c.startswith("featurelens_")]
    assert len(cols) == 4 and adata.varm["sae_decoder"].shape == (adata.n_vars, 4)
    assert "stored as run" in proc.stdout and "predicted by the scvi decoder" in proc.stdout
