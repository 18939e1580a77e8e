import numpy as np
import pytest
import torch

from dydca_lib import general
from dydca_lib.models import WDSR, count_parameters, fold_weight_norm, super_resolve
from dydca_lib.train import FitConfig, RandomPatchSampler, fit, load_model, save_checkpoint


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


def test_fit_resume_from_midway_checkpoint_matches_uninterrupted(tmp_path, monkeypatch):
    def fresh():
        torch.manual_seed(0)
        return WDSR(scale=2, n_blocks=1, n_feats=4, expansion=2), RandomPatchSampler(pairs(), 2, (8, 8), seed=0)

    cfg = FitConfig(steps=6, batch_size=2, checkpoint_every=3, seed=0)
    ref_model, ref_sampler = fresh()
    ref = fit(ref_model, ref_sampler, cfg)

    class Killed(Exception):
        pass

    ckpt = tmp_path / "k.ckpt"
    model, sampler = fresh()
    real_batch = sampler.batch
    calls = {"n": 0}

    def dying_batch(n):
        calls["n"] += 1
        if calls["n"] == 5:  # dies during step 5, after the step-3 checkpoint
            raise Killed
        return real_batch(n)

    monkeypatch.setattr(sampler, "batch", dying_batch)
    with pytest.raises(Killed):
        fit(model, sampler, cfg, checkpoint=ckpt)
    assert torch.load(ckpt, weights_only=True)["step"] == 3
    model, sampler = fresh()
    resumed = fit(model, sampler, cfg, checkpoint=ckpt)
    assert len(resumed) == 6
    np.testing.assert_allclose(resumed.loss.to_numpy(), ref.loss.to_numpy(), rtol=1e-6)
    for k, v in ref_model.state_dict().items():
        assert torch.allclose(v, model.state_dict()[k], atol=1e-7)


def test_checkpoint_of_another_shape_is_a_clear_error(tmp_path):
    m = WDSR(scale=2, n_blocks=1, n_feats=4, expansion=2)
    other = WDSR(scale=2, n_blocks=2, n_feats=4, expansion=2)
    save_checkpoint(tmp_path / "m.pt", model=other.state_dict(), config=m.config)
    with pytest.raises(RuntimeError, match="does not match the model shape"):
        load_model(tmp_path / "m.pt")
    sampler = RandomPatchSampler(pairs(), 2, (8, 8))
    save_checkpoint(tmp_path / "c.ckpt", model=other.state_dict(), config=other.config)
    with pytest.raises(RuntimeError, match="checkpoint .* is for model"):
        fit(m, sampler, FitConfig(steps=1, batch_size=1), checkpoint=tmp_path / "c.ckpt")


def test_general_model_is_cached_and_excludes_the_evaluated_video(tmp_root):
    spec = general.GeneralSpec(n_blocks=1, n_feats=4, expansion=2, steps=2, batch_size=2, patch=16, clips=())
    model, history, info = general.general_model(spec, "cityCC0")
    assert len(history) == 2 and info["excluded_video"] == "cityCC0"
    files = sorted(p.name for p in (tmp_root / "data" / "models").iterdir())
    assert len(files) == 1 and files[0].endswith(".pt")  # the resume checkpoint is gone
    again, _, info2 = general.general_model(spec, "cityCC0")
    assert info2["cache_file"] == info["cache_file"]
    assert general.training_sources(general.GeneralSpec(clips=("bikes", "cityCC0")), "cityCC0") == ["bikes"]
    lr = np.zeros((10, 12, 3), np.uint8)
    assert super_resolve(again, lr).shape == (20, 24, 3)
