"""The decoder interface: shapes, positivity, chunking, TorchScript round trip, probe errors, no decoder."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from core.base.errors import InputError
from core.model import (BuiltinDecoder, FittedModel, ModelConfig, NoDecoder, TorchScriptDecoder, decode_all,
                        decode_to_memmap, load_decoder, save_model)
from core.model.vae import ExpressionModel

pytestmark = pytest.mark.filterwarnings(r"ignore:.*torch\.jit.*:DeprecationWarning")

N_GENES, LATENT = 30, 5
GENES = [f"G{j}" for j in range(N_GENES)]


def untrained(n_cov: int = 0, likelihood: str = "nb", seed: int = 0) -> FittedModel:
    torch.manual_seed(seed)
    cfg = ModelConfig(latent=LATENT, hidden=16, likelihood=likelihood)
    model = ExpressionModel(N_GENES, n_cov, cfg).eval()
    cov = {"key": "batch", "categories": [f"b{i}" for i in range(n_cov)]} if n_cov else None
    return FittedModel(model=model, config=cfg, gene_names=list(GENES), covariate=cov)


@pytest.fixture
def latent(rng):
    return rng.normal(size=(103, LATENT)).astype(np.float32)


@pytest.fixture
def library(rng):
    return rng.uniform(200, 5000, size=103)


def test_builtin_decode_shape_positive_and_library_scaled(latent, library):
    dec = BuiltinDecoder(untrained())
    out = decode_all(dec, latent, library)
    assert out.shape == (103, N_GENES) and out.dtype == np.float32
    assert (out > 0).all()
    np.testing.assert_allclose(out.sum(1), library, rtol=1e-4)  # softmax composition × library
    unit = decode_all(dec, latent)  # no library: per unit library
    np.testing.assert_allclose(unit.sum(1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("chunk", [1, 7, 50, 103, 1000])
def test_chunked_equals_unchunked(latent, library, chunk):
    dec = BuiltinDecoder(untrained())
    whole = dec.decode_chunk(latent, library)
    chunks = list(dec.decode(latent, library, chunk_size=chunk))
    assert [c.start for c in chunks] == list(range(0, 103, chunk))
    np.testing.assert_allclose(np.concatenate([c.values for c in chunks]), whole, rtol=1e-6)


def test_memory_bound_chunking_and_memmap(latent, library, tmp_path):
    dec = BuiltinDecoder(untrained())
    # a 1 KiB budget forces chunks of a few cells
    assert dec.chunk_rows(1024) == 1024 // (4 * 3 * N_GENES)
    seen = []
    mm = decode_to_memmap(dec, latent, library, path=tmp_path / "pred.npy", max_chunk_bytes=1024,
                          progress=lambda done, total, msg: seen.append(done))
    assert isinstance(mm, np.memmap) and mm.dtype == np.float32 and not mm.flags.writeable
    np.testing.assert_allclose(np.asarray(mm), dec.decode_chunk(latent, library), rtol=1e-6)
    assert seen[-1] == 103 and len(seen) > 10


def test_covariates_required_and_checked(latent, library):
    dec = BuiltinDecoder(untrained(n_cov=2))
    with pytest.raises(InputError, match="covariate"):
        decode_all(dec, latent, library)
    cov = dec.covariates_for(["b0", "b1"] * 51 + ["b0"])
    a = decode_all(dec, latent, library, cov)
    b = decode_all(dec, latent, library, np.roll(cov, 1, axis=1))
    assert a.shape == (103, N_GENES) and not np.allclose(a, b)
    with pytest.raises(InputError, match="shape"):
        decode_all(dec, latent, library, cov[:, :1])


def test_bad_latent_and_library(latent, library):
    dec = BuiltinDecoder(untrained())
    with pytest.raises(InputError, match="5-dimensional"):
        decode_all(dec, latent[:, :3], library)
    bad = latent.copy()
    bad[4, 1] = np.nan
    with pytest.raises(InputError, match="NaN"):
        decode_all(dec, bad, library)
    with pytest.raises(InputError, match="library sizes"):
        decode_all(dec, latent, library[:10])


def test_torchscript_round_trip_of_builtin_decoder(latent, library, tmp_path):
    dec = BuiltinDecoder(untrained(n_cov=2))
    path = dec.export_torchscript(tmp_path / "decoder.pt")
    ts = load_decoder(path, n_latent=LATENT, gene_names=GENES, n_covariates=2, probe_latent=latent)
    assert isinstance(ts, TorchScriptDecoder)
    cov = dec.covariates_for(["b1"] * 103)
    np.testing.assert_allclose(decode_all(ts, latent, library, cov), decode_all(dec, latent, library, cov),
                               rtol=1e-5)
    assert ts.fingerprint() != dec.fingerprint()


class ScaleDecoder(nn.Module):
    """An external decoder exported the documented way: forward(z) -> composition."""

    def __init__(self, n_latent: int, n_genes: int):
        super().__init__()
        self.lin = nn.Linear(n_latent, n_genes)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.lin(z), dim=1)


def test_scripted_and_traced_user_decoders(latent, library, tmp_path):
    torch.manual_seed(0)
    module = ScaleDecoder(LATENT, N_GENES).eval()
    scripted, traced = tmp_path / "s.pt", tmp_path / "t.pt"
    torch.jit.save(torch.jit.script(module), str(scripted))
    torch.jit.save(torch.jit.trace(module, torch.zeros(2, LATENT)), str(traced))
    with torch.no_grad():
        expected = (module(torch.from_numpy(latent)) * torch.from_numpy(library[:, None]).float()).numpy()
    for path in (scripted, traced):
        dec = load_decoder(path, n_latent=LATENT, gene_names=GENES)
        np.testing.assert_allclose(decode_all(dec, latent, library, chunk_size=17), expected, rtol=1e-5)
    counts = load_decoder(scripted, n_latent=LATENT, gene_names=GENES, output="counts")
    np.testing.assert_allclose(decode_all(counts, latent, library).sum(1), 1.0, rtol=1e-5)  # library not applied


class NaNDecoder(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.log(z - 100.0).repeat(1, 6)


class NaNForSomeCells(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        out = torch.softmax(z.repeat(1, 6), dim=1)
        return torch.where(z[:, :1] > 3.0, torch.full_like(out, float("nan")), out)


class NegativeDecoder(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.repeat(1, 6)


class TupleDecoder(nn.Module):
    def forward(self, z: torch.Tensor):
        return torch.softmax(z.repeat(1, 6), dim=1), z


def _save(module, path):
    torch.jit.save(torch.jit.script(module), str(path))
    return path


def test_probe_names_the_problem(tmp_path, latent):
    small = _save(ScaleDecoder(LATENT, N_GENES), tmp_path / "ok.pt")
    with pytest.raises(InputError, match="fails on a 8-dimensional latent .its first layer takes 5 inputs"):
        load_decoder(small, n_latent=8, gene_names=GENES)
    with pytest.raises(InputError, match="predicts 30 genes but the data has 12"):
        load_decoder(small, n_latent=LATENT, gene_names=GENES[:12])
    with pytest.raises(InputError, match="NaN"):
        load_decoder(_save(NaNDecoder(), tmp_path / "nan.pt"), n_latent=LATENT, gene_names=GENES)
    with pytest.raises(InputError, match="negative"):
        load_decoder(_save(NegativeDecoder(), tmp_path / "neg.pt"), n_latent=LATENT, gene_names=GENES)
    with pytest.raises(InputError, match="tuple of 2"):
        load_decoder(_save(TupleDecoder(), tmp_path / "tuple.pt"), n_latent=LATENT, gene_names=GENES)


def test_nan_during_decoding_is_an_input_error(tmp_path, latent, library):
    dec = load_decoder(_save(NaNForSomeCells(), tmp_path / "late.pt"), n_latent=LATENT, gene_names=GENES,
                       probe_latent=np.zeros((4, LATENT), np.float32))
    z = latent.copy()
    z[60, 0] = 5.0
    with pytest.raises(InputError, match="NaN/Inf values for cells"):
        decode_all(dec, z, library, chunk_size=25)
    target = tmp_path / "pred.npy"
    with pytest.raises(InputError):
        decode_to_memmap(dec, z, library, path=target)
    assert not target.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_untrusted_files_are_refused(tmp_path, latent):
    state = tmp_path / "state.pt"
    torch.save(ScaleDecoder(LATENT, N_GENES).state_dict(), state)  # a zip, but not TorchScript
    with pytest.raises(InputError, match="could not be loaded as TorchScript"):
        load_decoder(state, n_latent=LATENT)
    legacy = tmp_path / "legacy.pt"
    torch.save(ScaleDecoder(LATENT, N_GENES), legacy, _use_new_zipfile_serialization=False)  # pickled module
    with pytest.raises(InputError, match="not a TorchScript archive"):
        load_decoder(legacy, n_latent=LATENT)
    with pytest.raises(InputError, match="does not exist"):
        load_decoder(tmp_path / "missing.pt", n_latent=LATENT)
    with pytest.raises(InputError, match="not a decoder FeatureLens can read"):
        (tmp_path / "x.txt").write_text("hi")
        load_decoder(tmp_path / "x.txt", n_latent=LATENT)


def test_no_decoder_refuses_steering_with_a_fix(latent):
    dec = load_decoder(None, n_latent=LATENT, gene_names=GENES)
    assert isinstance(dec, NoDecoder) and not dec.available and dec.fingerprint() == "none"
    for call in (lambda: dec.decode_chunk(latent), lambda: list(dec.decode(latent)), lambda: decode_all(dec, latent)):
        with pytest.raises(InputError) as exc:
            call()
        assert "steering needs the model's decoder" in str(exc.value)
        assert "featurelens fit-model" in str(exc.value) and "docs/decoders.md" in str(exc.value)
    assert isinstance(load_decoder("none"), NoDecoder)


def test_builtin_model_folder_genes_and_latent_checked(tmp_path, latent, library):
    fitted = untrained()
    folder = save_model(fitted, tmp_path / "m.featurelens-model")
    dec = load_decoder(folder, n_latent=LATENT, gene_names=GENES)
    assert isinstance(dec, BuiltinDecoder) and dec.fingerprint() == BuiltinDecoder(fitted).fingerprint()
    with pytest.raises(InputError, match="5-dimensional latent, the embedding has 7"):
        load_decoder(folder, n_latent=7)
    with pytest.raises(InputError, match="30 genes but the data has 29"):
        load_decoder(folder, gene_names=GENES[:-1])
    shuffled = GENES[::-1]
    rev = load_decoder(folder, gene_names=shuffled)  # same genes, other order: output follows the data
    np.testing.assert_allclose(decode_all(rev, latent, library), decode_all(dec, latent, library)[:, ::-1], rtol=1e-6)


# ----------------------------------------------------------------------------- docs/decoders.md recipes
class FakeMultiDGDDecoder(nn.Module):
    """Stand-in with multiDGD's Decoder contract: forward(z_and_cov) -> [rna_softmax, atac_sigmoid]."""

    def __init__(self, n_in: int, n_genes: int, n_peaks: int):
        super().__init__()
        self.main = nn.Sequential(nn.Linear(n_in, 16), nn.ReLU())
        self.rna = nn.Linear(16, n_genes)
        self.atac = nn.Linear(16, n_peaks)

    def forward(self, z):
        h = self.main(z)
        return [torch.softmax(self.rna(h), dim=-1), torch.sigmoid(self.atac(h))]


class MultiDGDRNA(nn.Module):  # the wrapper shown in docs/decoders.md
    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, z, covariates):
        return self.decoder(torch.cat((z, covariates), 1))[0]


class FakeSCVIModule(nn.Module):
    """Stand-in with scVI's generative(z, library, batch_index) -> {"px": ... .scale}."""

    class _PX:
        def __init__(self, scale, rate):
            self.scale, self.mu = scale, rate

    def __init__(self, n_latent: int, n_batch: int, n_genes: int):
        super().__init__()
        self.n_batch = n_batch
        self.lin = nn.Linear(n_latent + n_batch, n_genes)

    def generative(self, z, library, batch_index):
        onehot = torch.nn.functional.one_hot(batch_index.squeeze(-1), self.n_batch).float()
        scale = torch.softmax(self.lin(torch.cat([z, onehot], 1)), dim=-1)
        return {"px": self._PX(scale, torch.exp(library) * scale)}


class SCVIScale(nn.Module):  # the wrapper shown in docs/decoders.md
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, z, covariates):
        batch_index = covariates.argmax(dim=1, keepdim=True)
        library = torch.zeros(z.shape[0], 1)  # log library 0: px.scale is the composition
        return self.module.generative(z, library, batch_index)["px"].scale


@pytest.mark.parametrize("which", ["multidgd", "scvi"])
def test_documented_export_recipes(which, tmp_path, latent, library):
    torch.manual_seed(0)
    n_cov = 2 if which == "multidgd" else 3
    wrapper = (MultiDGDRNA(FakeMultiDGDDecoder(LATENT + n_cov, N_GENES, 7)) if which == "multidgd"
               else SCVIScale(FakeSCVIModule(LATENT, n_cov, N_GENES))).eval()
    cov = np.zeros((103, n_cov), np.float32)
    cov[np.arange(103), np.arange(103) % n_cov] = 1.0
    example = (torch.zeros(2, LATENT), torch.from_numpy(cov[:2]))
    traced = torch.jit.trace(wrapper, example)
    torch.jit.save(traced, str(tmp_path / "decoder.pt"))
    dec = load_decoder(tmp_path / "decoder.pt", n_latent=LATENT, gene_names=GENES, n_covariates=n_cov)
    with torch.no_grad():
        expected = wrapper(torch.from_numpy(latent), torch.from_numpy(cov)).numpy() * library[:, None]
    np.testing.assert_allclose(decode_all(dec, latent, library, cov), expected, rtol=1e-5)
