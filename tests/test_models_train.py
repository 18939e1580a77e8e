import numpy as np
import pandas as pd
import pytest
import torch

from dydca_lib import general
from dydca_lib.models import DynamicWDSR, WDSR, count_parameters, fold_weight_norm, model_record, super_resolve
from dydca_lib import train
from dydca_lib.train import BucketedPatchSource, FitConfig, RandomPatchSampler, fit, load_model, save_checkpoint


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_wdsr_shapes_and_weight_norm_folding(scale):
    torch.manual_seed(0)
    m = WDSR(scale=scale, n_blocks=1, n_feats=8, expansion=2).eval()
    x = torch.rand(2, 3, 7, 9)
    y = m(x)
    assert y.shape == (2, 3, 7 * scale, 9 * scale)
    folded = fold_weight_norm(m)
    assert torch.allclose(folded(x), y, atol=1e-6)
    assert not any("parametrizations" in n for n, _ in folded.named_parameters())


def test_parameter_counts_match_the_papers():
    assert round(count_parameters(WDSR(scale=2, n_blocks=16, n_feats=32, expansion=4)) / 1e6, 2) == 1.19  # STDO
    deep, shallow = (count_parameters(WDSR(scale=2, n_blocks=b, n_feats=32, expansion=2)) for b in (4, 2))
    assert abs(deep + shallow - 233_000) < 3_000  # Dy-DCA's two paths, ~233 k


def pairs(n=3, seed=0):
    rng = np.random.default_rng(seed)
    hr = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(n)]
    return [(h[::2, ::2].copy(), h) for h in hr]


def tiny_manifest():
    """Two frames of 12x16 LR: 4x4 patches (path 0) and 8x8 patches (path 1)."""
    rows = []
    for f in (0, 1):
        rows += [dict(frame=f, y=y, x=x, h=4, w=4, path=0) for y in (0, 4) for x in (0, 4, 8, 12)]
        rows += [dict(frame=f, y=8, x=x, h=4, w=8, path=1) for x in (0, 8)]
    return pd.DataFrame(rows)


def tiny_frames(seed=0):
    rng = np.random.default_rng(seed)
    hr = {f: rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for f in (0, 1)}
    return {f: v[::2, ::2].copy() for f, v in hr.items()}, hr


def test_bucketed_source_batches_are_same_size_and_cover_each_epoch():
    lr, hr = tiny_frames()
    src = BucketedPatchSource(tiny_manifest(), lr, hr, scale=2, batch_size=3, context=2, seed=0)
    assert src.steps_per_epoch == 6 + 2  # 16 small patches -> 6 batches, 4 wide ones -> 2
    seen = np.concatenate(src.plan(0))
    assert sorted(seen) == list(range(20))
    for step in range(src.steps_per_epoch):
        b = src.batch(step)
        assert b.lr.shape[2:] in {(8, 8), (8, 12)} and b.crop == 4
        assert b.hr.shape[2:] == ((b.lr.shape[2] - 4) * 2, (b.lr.shape[3] - 4) * 2)
        assert b.path == (0 if b.lr.shape[3] == 8 else 1)
    assert [list(x) for x in src.plan(1)] != [list(x) for x in src.plan(0)]  # reshuffled per epoch


def test_bucketed_source_cuts_the_same_pixels_as_extract():
    """Batches come from frames padded once; they must hold exactly what patches.extract cuts
    (context and overhang edge-replicated), frame by frame in the order the plan meets them."""
    from dydca_lib.patches import extract

    lr, hr = tiny_frames(seed=3)
    m = tiny_manifest()
    m.loc[m.h == 4, "y"] += 1  # patches that overhang the bottom of the frame
    src = BucketedPatchSource(m, lr, hr, scale=2, batch_size=3, context=2, seed=1, augment=False)
    for step in range(src.steps_per_epoch):
        rows = m.loc[src.plan(0)[step]]
        want_lr, want_hr = [], []
        for f, g in rows.groupby("frame", sort=False):
            want_lr += extract(lr[f], g, context=2)
            want_hr += extract(hr[f], g, scale=2)
        b = src.batch(step)
        assert torch.equal(b.lr, torch.from_numpy(np.stack(want_lr)).permute(0, 3, 1, 2).float() / 255)
        assert torch.equal(b.hr, torch.from_numpy(np.stack(want_hr)).permute(0, 3, 1, 2).float() / 255)


@pytest.mark.parametrize("precision", ["fp32", "auto"])  # auto: bf16 on CPUs with AMX/AVX512-BF16
def test_killed_training_resumes_to_the_same_weights(tmp_path, monkeypatch, precision):
    lr, hr = tiny_frames()

    def fresh():
        torch.manual_seed(0)
        model = DynamicWDSR(scale=2, paths=[{"n_blocks": 1, "n_feats": 4}, {"n_blocks": 0, "n_feats": 4}],
                            routing=[(4, 4, 0), (4, 8, 1)])
        return model, BucketedPatchSource(tiny_manifest(), lr, hr, scale=2, batch_size=4, context=1, seed=0)

    model, src = fresh()
    cfg = FitConfig(steps=3 * src.steps_per_epoch, checkpoint_every=src.steps_per_epoch, seed=0, precision=precision)
    ref = fit(model, src, cfg)
    ref_state = {k: v.clone() for k, v in model.state_dict().items()}

    class Killed(Exception):
        pass

    ckpt = tmp_path / "run.ckpt"
    model, src = fresh()
    real_batch, calls = src.batch, {"n": 0}

    def dying_batch(step):
        calls["n"] += 1
        if calls["n"] == src.steps_per_epoch + 3:  # dies in epoch 2, after the epoch-1 checkpoint
            raise Killed
        return real_batch(step)

    monkeypatch.setattr(src, "batch", dying_batch)
    with pytest.raises(Killed):
        fit(model, src, cfg, checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["step"] == src.steps_per_epoch
    model, src = fresh()
    resumed = fit(model, src, cfg, checkpoint=ckpt)
    assert len(resumed) == len(ref)
    np.testing.assert_allclose(resumed.loss.to_numpy(), ref.loss.to_numpy(), rtol=1e-5)
    for k, v in ref_state.items():
        assert torch.allclose(v, model.state_dict()[k], atol=1e-6)
    loaded = load_model(ckpt)  # the final checkpoint loads as a model, weights only
    assert isinstance(loaded, DynamicWDSR) and loaded.route(4, 8) == 1


def test_checkpoint_of_another_shape_is_a_clear_error(tmp_path):
    m = WDSR(scale=2, n_blocks=1, n_feats=4, expansion=2)
    other = WDSR(scale=2, n_blocks=2, n_feats=4, expansion=2)
    save_checkpoint(tmp_path / "m.pt", model=other.state_dict(), config=model_record(m))
    with pytest.raises(RuntimeError, match="does not match the model shape"):
        load_model(tmp_path / "m.pt")
    sampler = RandomPatchSampler(pairs(), 2, (8, 8), batch_size=1)
    save_checkpoint(tmp_path / "c.ckpt", model=other.state_dict(), config=model_record(other))
    with pytest.raises(RuntimeError, match="checkpoint .* is for model"):
        fit(m, sampler, FitConfig(steps=1), checkpoint=tmp_path / "c.ckpt")


def test_dynamic_model_routes_by_size_and_exports_each_path():
    m = DynamicWDSR(scale=2, routing=[(20, 18, 0), (40, 36, 1)])
    assert abs(count_parameters(m) - 233_000) < 3_000  # Dy-DCA's ~233 k at x2
    assert m.route(40, 36) == 1
    with pytest.raises(KeyError, match="no path for 10x10"):
        m.route(10, 10)
    with pytest.raises(ValueError, match="path 2"):
        DynamicWDSR(routing=[(4, 4, 2)])
    folded = fold_weight_norm(m).eval()
    dims = {0: torch.export.Dim("n", min=1, max=64), 2: torch.export.Dim("h", min=8, max=64),
            3: torch.export.Dim("w", min=8, max=64)}
    for path in (0, 1):
        ep = torch.export.export(folded.paths[path], (torch.rand(2, 3, 20, 18),),
                                 dynamic_shapes={"x": dims})
        for hw in ((20, 18), (40, 36)):  # one export, two patch sizes
            x = torch.rand(3, 3, *hw)
            assert torch.allclose(ep.module()(x), m.paths[path](x), atol=1e-5)


def test_general_model_is_cached_and_excludes_the_evaluated_video(tmp_root):
    spec = general.GeneralSpec(n_blocks=1, n_feats=4, expansion=2, steps=2, batch_size=2, patch=16, clips=())
    model, history, info = general.general_model(spec, "cityCC0")
    assert len(history) == 2 and info["excluded_video"] == "cityCC0"
    files = sorted(p.name for p in (tmp_root / "data" / "models").iterdir())
    assert len(files) == 1 and files[0].endswith(".pt")  # the resume checkpoint is gone
    again, _, info2 = general.general_model(spec, "cityCC0")
    assert info2["cache_file"] == info["cache_file"]
    _, _, other = general.general_model(spec, "bikes")  # same training content: the same model, not retrained
    assert other["cache_file"] == info["cache_file"] and other["excluded_video"] == "bikes"
    assert general.training_sources(general.GeneralSpec(clips=("bikes", "cityCC0")), "cityCC0") == ["bikes"]
    lr = np.zeros((10, 12, 3), np.uint8)
    assert super_resolve(again, lr).shape == (20, 24, 3)


def test_general_model_weights_do_not_depend_on_what_the_process_drew_before(tmp_path):
    spec = general.GeneralSpec(n_blocks=1, n_feats=4, expansion=2, steps=2, batch_size=2, patch=16, clips=())
    torch.manual_seed(123)
    a, _, _ = general.general_model(spec, "cityCC0", cache_dir=tmp_path / "a")
    torch.rand(1000)  # a notebook or a sweep worker may have used the global generator in between
    b, _, _ = general.general_model(spec, "cityCC0", cache_dir=tmp_path / "b")
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_training_precision_follows_the_hardware(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(train, "cpu_flags", lambda: frozenset({"avx512f", "amx_bf16"}))
    assert train.resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(train, "cpu_flags", lambda: frozenset({"avx2"}))
    assert train.resolve_precision("auto", cpu) == "fp32"
    with pytest.raises(ValueError, match="no native bf16"):
        train.resolve_precision("bf16", cpu)
    with pytest.raises(ValueError, match="use one of"):
        train.resolve_precision("fp16", cpu)


def test_fast_training_gives_back_a_plain_fp32_model_and_records_its_precision():
    sampler = RandomPatchSampler(pairs(), 2, (8, 8), batch_size=4)
    losses = {}
    for precision in ["fp32", train.resolve_precision("auto", torch.device("cpu"))]:
        torch.manual_seed(0)
        m = WDSR(scale=2, n_blocks=1, n_feats=8, expansion=2)
        hist = fit(m, sampler, FitConfig(steps=2, seed=0, precision=precision, channels_last=True))
        assert set(hist.precision) == {precision}
        for name, p in m.state_dict().items():
            assert p.dtype == torch.float32 and p.is_contiguous(), name
        losses[precision] = hist.loss.iloc[0]
    # the first step's loss (same weights, same batch) agrees to bf16's ~3 significant digits
    assert losses["fp32"] == pytest.approx(list(losses.values())[-1], rel=2e-2)


def test_the_model_cache_keys_the_training_precision(tmp_path, monkeypatch):
    sampler = RandomPatchSampler(pairs(), 2, (8, 8), batch_size=2)
    files = []
    for precision in ["fp32", "bf16"]:  # what "auto" resolves to on a CPU without / with native bf16
        monkeypatch.setattr(train, "resolve_precision", lambda p, d, precision=precision: precision)
        monkeypatch.setattr(train, "fit", lambda *a, precision=precision, **k: pd.DataFrame(
            [{"step": 1, "loss": 0.1, "lr": 1e-3, "patches": 2, "lr_pixels": 128, "seconds": 0.1,
              "precision": precision}]))
        m = WDSR(scale=2, n_blocks=0, n_feats=4, expansion=2)
        _, _, info = train.train_or_load(m, sampler, FitConfig(steps=1), {"k": 1}, "m", cache_dir=tmp_path)
        files.append(info["cache_file"])
        assert info["precision"] == precision
    assert files[0] != files[1]


def test_the_torch_and_numpy_uint8_conversions_agree_to_the_bit():
    """Two implementations by design: the PyTorch one rounds on the tensor's device (a GPU client
    copies uint8, not float), the NumPy one serves the torch-free client. They must give the same
    pixels: clamp to [0, 1], x 255, round half to even — ties and out-of-range values included."""
    from dydca_lib.models import to_uint8 as torch_to_uint8
    from dydca_lib.tensors import to_uint8 as numpy_to_uint8

    rng = np.random.default_rng(0)
    y = rng.uniform(-0.2, 1.2, size=(2, 3, 7, 5)).astype(np.float32)
    y.flat[:6] = np.array([0.5, 1.5, 2.5, 253.5, 254.5, 127.5], np.float32) / np.float32(255.0)  # near the ties
    assert np.array_equal(torch_to_uint8(torch.from_numpy(y)), numpy_to_uint8(y))
