"""Safety defaults: loopback binding, confined paths, no unpickling of user files (DESIGN.md, Safety defaults)."""
from __future__ import annotations

import ast
import sys
import types
from pathlib import Path

import pytest

from core.cli.main import build_parser, main
from core.base.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SOURCE_DIRS = ("core", "callbacks", "components", "scripts", "benchmarks")


# ----------------------------------------------------------------------------- binding
@pytest.fixture
def fake_app(monkeypatch):
    """Replace the Dash entry point and the server so `serve` runs without serving; records how it
    would serve (tests/test_serve.py serves for real)."""
    from core.cli import serve as serve_module

    runs: list[dict] = []
    built = object()
    module = types.ModuleType("app")
    module.create_app = lambda default_analysis=None: built
    monkeypatch.setitem(sys.modules, "app", module)

    def run_server(dash_app, **kwargs):
        assert dash_app is built
        runs.append(kwargs)

    monkeypatch.setattr(serve_module, "run_server", run_server)
    monkeypatch.setenv("FEATURELENS_CONFINE", "")  # records the variable, so serve's setting is undone afterwards
    monkeypatch.delenv("FEATURELENS_CONFINE")
    return runs


@pytest.mark.parametrize("command", ["serve", "demo"])
def test_default_host_is_loopback(command):
    assert build_parser().parse_args([command]).host == "127.0.0.1"


def test_serve_binds_loopback_without_warning(fake_app, capsys):
    import os

    assert main(["serve", "--port", "8123"]) == 0
    assert fake_app == [{"host": "127.0.0.1", "port": 8123, "debug": False, "threads": 8}]
    assert "warning" not in capsys.readouterr().err
    assert "FEATURELENS_CONFINE" not in os.environ  # on loopback, analyses may refer to data anywhere here


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "myserver.example.org"])
def test_exposing_the_app_warns_and_confines(fake_app, capsys, host):
    import os

    assert main(["serve", "--host", host]) == 0
    assert fake_app[0]["host"] == host
    err = capsys.readouterr().err
    assert f"warning: binding to {host}" in err and "anyone who can reach this machine" in err
    assert os.environ["FEATURELENS_CONFINE"] == "1"  # exposed: only paths inside the configured folders


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.2", "::1"])
def test_loopback_names_do_not_warn(fake_app, capsys, host):
    assert main(["serve", "--host", host]) == 0
    assert "warning" not in capsys.readouterr().err


def test_debug_mode_is_refused_when_exposed(fake_app, capsys):
    assert main(["serve", "--host", "0.0.0.0", "--debug"]) == 2
    assert "run code through the debugger" in capsys.readouterr().err and fake_app == []
    assert main(["serve", "--debug"]) == 0 and fake_app[0]["debug"] is True


def test_app_module_binds_loopback_when_run_directly():
    tree = ast.parse((ROOT / "app.py").read_text())
    runs = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) in ("run", "run_server")]
    assert runs, "app.py should start the server (core.cli.serve.run_server) in its __main__ block"
    for call in runs:
        host = next(k.value for k in call.keywords if k.arg == "host")
        assert isinstance(host, ast.Constant) and host.value == "127.0.0.1"


# ----------------------------------------------------------------------------- no unpickling
def _sources() -> list[Path]:
    files = [ROOT / "app.py"]
    for d in SOURCE_DIRS:
        files += sorted((ROOT / d).rglob("*.py"))
    return [f for f in files if f.is_file()]


def _calls(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def _kw(call: ast.Call, name: str):
    kw = next((k for k in call.keywords if k.arg == name), None)
    return None if kw is None else (kw.value.value if isinstance(kw.value, ast.Constant) else "<expr>")


FORBIDDEN = {"pickle.load", "pickle.loads", "pickle.Unpickler", "cPickle.load", "pd.read_pickle", "pandas.read_pickle",
             "joblib.load", "dill.load", "dill.loads", "cloudpickle.load", "cloudpickle.loads", "marshal.load",
             "marshal.loads", "shelve.open", "yaml.unsafe_load"}


# The one place that may unpickle, and why: an scvi-tools model folder's model.pt is a pickle by
# design (SCVI.load unpickles it the same way), read only from a folder the user names with
# --scvi-model; docs/decoders.md says to load only models you trust.
UNPICKLES_BY_DESIGN = {"core/model/scvi.py": 1}


def test_no_source_unpickles_files():
    seen = {"torch.load": 0, "np.load": 0, "torch.jit.load": 0}
    allowed = dict(UNPICKLES_BY_DESIGN)
    problems = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        for call, name in _calls(path):
            where = f"{rel}:{call.lineno} {name}(...)"
            if name in FORBIDDEN:
                problems.append(f"{where}: unpickles")
            elif name == "torch.load":
                seen[name] += 1
                if _kw(call, "weights_only") is not True:
                    if allowed.get(rel, 0) > 0:
                        allowed[rel] -= 1
                        continue
                    problems.append(f"{where}: needs weights_only=True")
            elif name in ("np.load", "numpy.load"):
                seen["np.load"] += 1
                if _kw(call, "allow_pickle") not in (None, False):
                    problems.append(f"{where}: allow_pickle must stay False")
            elif name == "torch.jit.load":
                seen[name] += 1
                if rel != "core/model/decoders.py":
                    problems.append(f"{where}: TorchScript is loaded only as a decoder (core/model/decoders.py)")
            elif name == "yaml.load" and "SafeLoader" not in ast.unparse(call):
                problems.append(f"{where}: use yaml.safe_load")
    assert not problems, "\n".join(problems)
    assert not any(allowed.values()), f"an allowed unpickling call is gone: drop it from the list ({allowed})"
    assert seen["torch.load"] >= 2 and seen["np.load"] >= 3 and seen["torch.jit.load"] == 1, seen  # the scan saw them


def test_scan_catches_unsafe_calls(tmp_path, monkeypatch):
    """The scanner itself: an unsafe file is reported (so the test above can fail)."""
    bad = tmp_path / "core" / "bad.py"
    bad.parent.mkdir()
    bad.write_text("import torch, pickle, numpy as np\n"
                   "torch.load('x')\ntorch.load('x', weights_only=False)\npickle.loads(b'')\n"
                   "np.load('x', allow_pickle=True)\ntorch.jit.load('m.pt')\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "app.py").write_text("")
    with pytest.raises(AssertionError) as err:
        test_no_source_unpickles_files()
    text = str(err.value)
    for line in ("bad.py:2 torch.load(...): needs weights_only=True", "bad.py:3 torch.load(...): needs weights_only",
                 "bad.py:4 pickle.loads(...): unpickles", "bad.py:5 np.load(...): allow_pickle must stay False"):
        assert line in text
    assert "TorchScript is loaded only" in text


def test_tampered_sae_weights_are_refused_without_running_code(tmp_path):
    """A shared analysis whose sae.pt holds pickled code: refused with a message; the code never runs."""
    import builtins

    import torch

    from core.store.analysis import Analysis
    from core.sae import VanillaConfig, build_sae, load_sae, save_sae

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return builtins.open, (str(marker), "w")

    a = Analysis.create(tmp_path / "an", dataset={"path": "x"})
    sae = build_sae(VanillaConfig(hidden=8), d_in=4)
    with a.step("sae", inputs={}) as w:
        save_sae(sae, w)
    torch.save({"weights": Payload()}, a.file("sae.pt"))
    with pytest.raises(InputError, match="sae.pt"):
        load_sae(a)
    assert not marker.exists()


# ----------------------------------------------------------------------------- paths
@pytest.fixture
def folders(tmp_path, monkeypatch):
    data, analyses = tmp_path / "data", tmp_path / "analyses"
    data.mkdir()
    analyses.mkdir()
    (data / "ok.h5ad").write_bytes(b"x")
    (analyses / "mine").mkdir()
    monkeypatch.setenv("FEATURELENS_DATA_DIR", str(data))
    monkeypatch.setenv("FEATURELENS_ANALYSES_DIR", str(analyses))
    monkeypatch.delenv("FEATURELENS_CONFINE", raising=False)
    return data, analyses


@pytest.mark.parametrize("value", [
    "file:../../etc/passwd", "file:/etc/passwd", "file:sub/../../x.h5ad", "file:..", "analysis:../data",
    "analysis:..", "analysis:/tmp", "analysis:mine/../../data",
])
def test_picker_refuses_traversal(folders, value):
    from core.store.catalog import describe_source, resolve_source

    with pytest.raises(InputError, match="outside the allowed folders"):
        resolve_source(value)
    assert "outside the allowed folders" in describe_source(value)["error"]


def test_picker_refuses_symlink_escape(folders, tmp_path):
    from core.store.catalog import resolve_source

    data, _ = folders
    (tmp_path / "secret.h5ad").write_bytes(b"x")
    (data / "link.h5ad").symlink_to(tmp_path / "secret.h5ad")
    (data / "dirlink").symlink_to(tmp_path, target_is_directory=True)
    for value in ("file:link.h5ad", "file:dirlink/secret.h5ad"):
        with pytest.raises(InputError, match="outside the allowed folders"):
            resolve_source(value)
    assert resolve_source("file:ok.h5ad") == ("file", (data / "ok.h5ad").resolve())


@pytest.mark.parametrize("name", ["../x", "a/b", "/abs", ".hidden", "", ".", "..", "x" * 81, "a\x00b", "a\\b",
                                  "-dash", "a b"])
def test_analysis_names_are_plain(folders, name):
    from core.views.data_sources import analysis_path  # what the app's training and picker use

    with pytest.raises(InputError, match="not a usable analysis name"):
        analysis_path(name)


@pytest.mark.parametrize("name", ["pbmc", "PBMC-68k", "run_1.v2"])
def test_good_analysis_names(folders, name):
    from core.views.data_sources import analysis_path

    _, analyses = folders
    assert analysis_path(name) == (analyses / name).resolve()


def test_user_paths_unconfined_on_the_command_line(folders):
    from core.base.paths import user_path

    assert user_path("/etc/passwd") == Path("/etc/passwd")  # a local user may open any file they can read


def test_user_paths_confined(folders, monkeypatch, tmp_path):
    from core.base.paths import SHIPPED_DATA_DIR, user_path

    data, analyses = folders
    monkeypatch.setenv("FEATURELENS_CONFINE", "1")
    monkeypatch.chdir(data)
    assert user_path("ok.h5ad") == Path("ok.h5ad")                      # relative to the current folder
    assert user_path(SHIPPED_DATA_DIR / "pbmc68k_reduced.h5ad")         # shipped data
    assert user_path(analyses / "mine" / "data" / "copy.h5ad")          # an analysis's copy of its data
    assert user_path(analyses / "mine", kind="analysis")
    for path, kind in (("../x.h5ad", "data"), ("/etc/passwd", "data"), (data / "ok.h5ad", "analysis"),
                       (tmp_path, "analysis")):
        with pytest.raises(InputError, match="outside the allowed folders"):
            user_path(path, kind=kind)


@pytest.mark.parametrize("loader", ["dataset", "gmt", "decoder", "analysis", "new analysis"])
def test_every_loader_is_confined(folders, monkeypatch, tmp_path, loader):
    """With confinement on, each core entry point that takes a user's path refuses one outside the folders."""
    from core.store.analysis import Analysis
    from core.concepts import read_gmt
    from core.data.load import load_dataset
    from core.model.decoders import load_decoder

    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.setenv("FEATURELENS_CONFINE", "1")
    call = {"dataset": lambda: load_dataset(outside / "x.h5ad"),
            "gmt": lambda: read_gmt(outside / "x.gmt"),
            "decoder": lambda: load_decoder(outside / "d.pt", n_latent=4),
            "analysis": lambda: Analysis.open(outside),
            "new analysis": lambda: Analysis.create(outside / "new", dataset={})}[loader]
    with pytest.raises(InputError, match="outside the allowed folders"):
        call()
    assert sorted(p.name for p in outside.iterdir()) == []  # nothing was created there


@pytest.mark.parametrize("text,reason", [("a\x00b.h5ad", "NUL"), ("x" * 300 + ".h5ad", "longer than 255"),
                                         ("/".join(["abc"] * 1500), "longer than 4096"), ("", "empty")])
def test_invalid_path_text(text, reason):
    from core.base.paths import check_path

    with pytest.raises(InputError, match=reason):
        check_path(text)
