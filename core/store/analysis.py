"""The analysis folder: the persistent unit of one exploration.

Layout (stable names, documented in README):

    analysis.json        config, dataset reference, seeds, versions, schema version, steps
    sae.pt / sae.json    SAE weights (state dict) and config
    metrics.json         training metrics
    features.parquet     one row per feature
    activations.npz      sparse cells × features activations (CSR)
    annotations.parquet  feature × term with all statistics
    concept_map.parquet  feature, x, y, n_terms, GO category (reported terms)

Every step writes into a staging folder; only when the step succeeds are its files renamed
into place and its input hash recorded in ``analysis.json``. A failed step leaves every
earlier file untouched. A step re-run with identical inputs is skipped (:meth:`Analysis.cached`).
A staging folder names its writer (host and process id); one left by a job that was killed
before it could clean up is removed the next time the analysis is opened.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from core.base import io
from core.base.errors import InputError, SchemaError, WriteError
from core.base.paths import user_path

__all__ = ["Analysis", "StepWriter", "SCHEMA_VERSION", "FILES", "STAGING_OWNER", "remove_stale_staging"]

SCHEMA_VERSION = 1
CONFIG_FILE = "analysis.json"
FILES = {
    "config": CONFIG_FILE,
    "sae_weights": "sae.pt",
    "sae_config": "sae.json",
    "metrics": "metrics.json",
    "features": "features.parquet",
    "activations": "activations.npz",
    "annotations": "annotations.parquet",
    "concept_map": "concept_map.parquet",
}
STAGING_PREFIX = ".staging-"
STAGING_OWNER = ".owner.json"      # inside a staging folder: {"host", "pid"} of the process writing it
STALE_STAGING_S = 24 * 3600        # an ownerless (or foreign-host) staging folder older than this is removed


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for pkg in ("featurelens", "numpy", "scipy", "pandas", "anndata", "torch"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


class StepWriter:
    """Stages the files of one step; they move into the analysis only if the step succeeds."""

    def __init__(self, staging: Path):
        self._staging = staging
        self.written: list[str] = []

    def path(self, name: str) -> Path:
        """The staged path of ``name``, for writers that stream into a file themselves."""
        return self._target(name)

    def _target(self, name: str) -> Path:
        # plain names, or names inside sub-folders ("steering/<run>/de.parquet"); never "..", absolute, or "\\"
        parts = name.split("/")
        if name == CONFIG_FILE or "\\" in name or any(p in ("", ".", "..") for p in parts):
            raise InputError(f"invalid analysis file name {name!r}")
        self.written.append(name)
        target = self._staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_json(self, name: str, obj: Any) -> None:
        io.write_json(self._target(name), obj)

    def write_parquet(self, name: str, df) -> None:
        io.write_parquet(self._target(name), df)

    def write_npz_sparse(self, name: str, matrix) -> None:
        io.write_npz_sparse(self._target(name), matrix)

    def write_torch_state(self, name: str, state: dict) -> None:
        io.write_torch_state(self._target(name), state)

    def write_bytes(self, name: str, data: bytes) -> None:
        io.write_bytes(self._target(name), data)


class Analysis:
    """An analysis folder on disk. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, path: Path, config: dict):
        self.path = path
        self.config = config

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        *,
        dataset: dict,
        seed: int = 0,
        settings: dict | None = None,
        overwrite: bool = False,
    ) -> "Analysis":
        """Start a new analysis of ``dataset`` (a reference: path, hash, embedding key, ...)."""
        path = user_path(path, kind="analysis")
        if (path / CONFIG_FILE).exists() and not overwrite:
            raise InputError(
                f"{path} already holds an analysis",
                fix="open it instead, choose another --out folder, or pass --overwrite",
            )
        if path.exists() and not path.is_dir():
            raise InputError(f"{path} exists and is not a folder", fix="choose another --out path")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WriteError(f"could not create the analysis folder {path}: {exc.strerror or exc}",
                             fix="choose an --out folder you can write to") from exc
        config = {
            "schema_version": SCHEMA_VERSION,
            "created": _now(),
            "dataset": dataset,
            "seed": int(seed),
            "settings": settings or {},
            "versions": _versions(),
            "steps": {},
        }
        try:
            io.write_json(path / CONFIG_FILE, config)
        except OSError as exc:
            raise WriteError(f"could not write {path / CONFIG_FILE}: {exc.strerror or exc}",
                             fix="free disk space (or check write permission) and run it again") from exc
        return cls(path, config)

    @classmethod
    def open_or_create(cls, path: str | os.PathLike, *, dataset: dict, seed: int = 0,
                       replace_other: bool = False) -> "Analysis":
        """Reopen the analysis at ``path`` if it is of the same dataset (sha256), else create it.

        An analysis of another dataset (or seed, when ``replace_other``) is an InputError, or
        is started afresh when ``replace_other`` is True (the demo does this).
        """
        path = Path(path)
        if (path / CONFIG_FILE).is_file():
            try:
                analysis = cls.open(path)
            except InputError:
                if not replace_other:
                    raise
                analysis = None
            if analysis is not None:
                old = analysis.config.get("dataset", {}).get("sha256")
                same = not (old and dataset.get("sha256")) or old == dataset["sha256"]
                if same and (not replace_other or analysis.seed == seed):
                    return analysis
                if not replace_other:
                    raise InputError(f"{path} is an analysis of another dataset "
                                     f"({analysis.config.get('dataset', {}).get('path')})",
                                     fix="choose another --out folder for this dataset")
        return cls.create(path, dataset=dataset, seed=seed, overwrite=replace_other)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "Analysis":
        path = user_path(path, kind="analysis")
        cfg_path = path / CONFIG_FILE
        if not cfg_path.is_file():
            raise InputError(
                f"{path} is not an analysis folder (no {CONFIG_FILE})",
                fix="create one with `featurelens train` or `featurelens demo`",
            )
        try:
            config = io.read_json(cfg_path)
        except ValueError as exc:
            raise InputError(f"{cfg_path} is not valid JSON ({exc})", fix="restore it from a backup") from None
        version = config.get("schema_version")
        if not isinstance(version, int):
            raise SchemaError(f"{cfg_path} has no schema_version", fix="it was not written by FeatureLens")
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"{path} was written by a newer FeatureLens (schema {version}; this one reads ≤ {SCHEMA_VERSION})",
                fix="upgrade FeatureLens (pip install -U featurelens)",
            )
        remove_stale_staging(path)
        return cls(path, config)

    # ------------------------------------------------------------------ files
    def file(self, name: str) -> Path:
        return self.path / name

    def has(self, name: str) -> bool:
        return self.file(name).is_file()

    def read_json(self, name: str) -> Any:
        return io.read_json(self._existing(name))

    def read_parquet(self, name: str):
        return io.read_parquet(self._existing(name))

    def read_npz_sparse(self, name: str):
        return io.read_npz_sparse(self._existing(name))

    def read_torch_state(self, name: str) -> dict:
        return io.read_torch_state(self._existing(name))

    def _existing(self, name: str) -> Path:
        p = self.file(name)
        if not p.is_file():
            raise InputError(f"{self.path} has no {name} yet", fix=_which_step_makes(name))
        return p

    # ------------------------------------------------------------------ steps
    @property
    def seed(self) -> int:
        return int(self.config.get("seed", 0))

    @staticmethod
    def inputs_hash(inputs: dict) -> str:
        return io.content_hash(inputs)

    def cached(self, step: str, *, inputs: dict) -> bool:
        """True if ``step`` already ran with these exact inputs and its files are all present."""
        rec = self.config.get("steps", {}).get(step)
        if not rec or rec.get("inputs_hash") != self.inputs_hash(inputs):
            return False
        return all(self.has(name) for name in rec.get("files", []))

    @contextlib.contextmanager
    def step(self, name: str, *, inputs: dict) -> Iterator[StepWriter]:
        """Stage the files of step ``name``; commit them and record ``inputs`` on success."""
        try:
            staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{name.replace('/', '-')}-", dir=self.path))
            (staging / STAGING_OWNER).write_text(json.dumps({"host": _host(), "pid": os.getpid()}))
        except OSError as exc:
            raise _write_error(name, self.path, exc) from exc
        writer = StepWriter(staging)
        try:
            yield writer
            record = {
                "inputs_hash": self.inputs_hash(inputs),
                "inputs": inputs,
                "files": list(dict.fromkeys(writer.written)),
                "completed": _now(),
            }
            # another process may have committed steps since this object read the config: add this
            # step to the config on disk, under the folder's lock, never write back a stale copy
            with _folder_lock(self.path):
                config = self._config_on_disk()
                config["steps"] = {**config.get("steps", {}), name: record}
                new_config = io.write_json(staging / ".config" / CONFIG_FILE, config)  # all writes happen before
                self._commit(staging, [*dict.fromkeys(writer.written), CONFIG_FILE], new_config)  # only renames
            self.config = config
        except OSError as exc:  # disk full, no permission: nothing in the analysis changed
            raise _write_error(name, self.path, exc) from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _config_on_disk(self) -> dict:
        """The config as it is on disk now (this object's copy if it cannot be read); an InputError if
        the folder holds another analysis than the one this object opened."""
        try:
            config = io.read_json(self.path / CONFIG_FILE)
        except (OSError, ValueError):
            return dict(self.config)
        same = ("created", "dataset", "seed")
        if any(config.get(k) != self.config.get(k) for k in same):
            raise InputError(f"{self.path} was replaced by another analysis while this step ran",
                             fix="open the analysis again and repeat the step")
        return config

    def _commit(self, staging: Path, names: list[str], new_config: Path) -> None:
        """Rename staged files (and the new config, last) into place; on failure put every old file back."""
        backup = staging / ".previous"
        moved: list[tuple[str, bool]] = []
        try:
            for fname in names:
                src = new_config if fname == CONFIG_FILE else staging / fname
                dst, old = self.path / fname, backup / fname
                had_old = dst.exists()
                if had_old:
                    old.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(dst, old)
                moved.append((fname, had_old))
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
        except BaseException:
            for fname, had_old in reversed(moved):
                dst = self.path / fname
                with contextlib.suppress(OSError):
                    if had_old:
                        os.replace(backup / fname, dst)
                    elif dst.exists():
                        dst.unlink()
            raise

    def summary(self) -> dict:
        """Small JSON-able description for lists and pickers."""
        return {
            "path": str(self.path),
            "name": self.path.name,
            "dataset": self.config.get("dataset", {}),
            "steps": sorted(self.config.get("steps", {})),
            "created": self.config.get("created"),
        }


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on the analysis folder (``flock`` on the directory itself: no lock file),
    held while a step reads, updates and replaces analysis.json. Processes on one host."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on POSIX: no lock
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _host() -> str:
    return platform.node() or "localhost"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` (on this host) still runs; a zombie (killed, not yet reaped) does not."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - psutil comes with dash[diskcache]
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def remove_stale_staging(folder: Path, *, now: float | None = None) -> list[str]:
    """Remove staging folders in ``folder`` left by killed writers; returns their names.

    Stale: written by a process of this host that no longer runs, or (owner unknown or on
    another host) not touched for :data:`STALE_STAGING_S`. A folder whose writer still runs is
    kept, so a job writing into the same analysis is never disturbed. Never raises.
    """
    now = time.time() if now is None else now
    removed = []
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith(STAGING_PREFIX) and p.is_dir()]
    except OSError:
        return removed
    for staging in candidates:
        try:
            owner = json.loads((staging / STAGING_OWNER).read_text())
            mine = owner.get("host") == _host()
            stale = not _alive(int(owner["pid"])) if mine else now - staging.stat().st_mtime > STALE_STAGING_S
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            try:
                stale = now - staging.stat().st_mtime > STALE_STAGING_S
            except OSError:
                continue
        if stale:
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging.name)
    return removed


def _write_error(step: str, folder: Path, exc: OSError) -> WriteError:
    return WriteError(f"could not write the {step} step into {folder}: {exc.strerror or exc}",
                      fix="free disk space (or check write permission) and run it again; "
                          "nothing in the analysis was changed")


def _which_step_makes(name: str) -> str:
    return {
        "sae.pt": "run `featurelens train` first",
        "sae.json": "run `featurelens train` first",
        "metrics.json": "run `featurelens train` first",
        "activations.npz": "run `featurelens train` first",
        "features.parquet": "run `featurelens train` first",
        "annotations.parquet": "run `featurelens annotate` first",
        "concept_map.parquet": "run `featurelens annotate` first",
    }.get(name, "run the step that produces it first")
