"""Every method of the main table, end to end on a tiny synthetic clip."""

import numpy as np
import pytest
import torch

from dydca_lib import methods as M
from dydca_lib import pipeline
from dydca_lib import registry as R
from dydca_lib.models import count_parameters, wdsr_flops


@pytest.fixture
def tiny_data(tmp_root, synthetic_video):
    return pipeline.patch_data(video=str(synthetic_video), scale=2, max_frames=30, chunk_seconds=1.0, heldout_every=5,
                               grid_rows=4, grid_cols=4, levels=2, general_blocks=0, general_feats=4,
                               general_steps=2, general_batch=2, general_patch=8)


def test_patch_data_is_consistent(tiny_data):
    d = tiny_data
    assert len(d.chunks) == 3 and len(d.heldout_ids) == 6
    assert set(d.manifest.frame) == set(d.frame_table.frame)
    assert set(d.routing.values()) <= {0, 1}


def test_every_method_trains_evaluates_and_reports_its_size(tiny_data):
    suite = R.method_suite(2, len(tiny_data.chunks), stdo_ks=(2,), joint_k=2, model_blocks=0, path_blocks=[1, 0],
                           n_feats=4, epochs=0.2, batch_size=4, context=1, equal_size=True)
    names = [m.name for m in suite]
    assert names[:8] == ["bicubic", "general", "one model per video", "one model per chunk", "CaFM", "STDO k=2",
                         "STDO joint (k=2)", "Dy-DCA"]
    rows = {}
    for m in suite:
        m.prepare(tiny_data)
        rows[m.name] = M.evaluate_method(m, tiny_data, tiny_data.train_ids[::4], tiny_data.heldout_ids)["row"]
    assert rows["bicubic"]["models"] == 0 and rows["one model per chunk"]["models"] == 3
    assert rows["STDO k=2"]["models"] == 2 and rows["Dy-DCA"]["models"] == 1
    assert rows["STDO k=2"]["routing_map_bytes"] > 0 and rows["Dy-DCA"]["routing_map_bytes"] > 0
    assert rows["one model per video"]["routing_map_bytes"] == 0
    assert rows["CaFM"]["models"] == 1 and rows["CaFM"]["routing_map_bytes"] == 0
    for r in rows.values():
        assert np.isfinite(r["frame_psnr_rgb"]) and 5 < r["frame_psnr_rgb"] < 60
    assert rows["Dy-DCA"]["model_bytes"] > 0
    assert rows["bicubic"]["gflop_per_frame"] == 0
    by_name = {m.name: m for m in suite}
    (h, w), c = tiny_data.frames.lr_hw, 1
    per_video = by_name["one model per video"]
    assert rows["one model per video"]["gflop_per_frame"] == pytest.approx(
        wdsr_flops(per_video.units()[0].config, h + 2 * c, w + 2 * c) / 1e9)
    dydca = by_name["Dy-DCA"]
    cuts = dydca.frame_manifest(tiny_data.heldout_ids)
    expected = sum(wdsr_flops(dydca.units()[int(p)].config, int(ph) + 2 * c, int(pw) + 2 * c)
                   for p, ph, pw in zip(cuts.path, cuts.h, cuts.w)) / len(tiny_data.heldout_ids) / 1e9
    assert rows["Dy-DCA"]["gflop_per_frame"] == pytest.approx(expected)
    assert rows["Dy-DCA"]["gflop_per_frame"] > rows["one model per video"]["gflop_per_frame"] * 0.5


def test_stdo_bins_and_per_chunk_paths(tiny_data):
    stdo = M.STDO(k=2)
    stdo.data = tiny_data
    b = stdo.binned()
    counts = b[b.split == "train"].path.value_counts()
    assert abs(counts[0] - counts[1]) <= 1
    assert b.loc[b.path == 0, "label"].max() <= b.loc[b.path == 1, "label"].min()
    chunked = M.PerChunk()
    chunked.data = tiny_data
    m = chunked.frame_manifest(tiny_data.heldout_ids)
    assert list(m.path) == list(tiny_data.frame_table.set_index("frame").loc[tiny_data.heldout_ids, "chunk"])
    joint = M.STDOJoint(k=2, shares=[1.0, 0.0])
    joint.data = tiny_data
    (train,) = joint.training_sets().values()
    assert len(train) == counts[0]  # all of bin 0, none of the easiest bin


def test_blocks_for_budget_matches_the_total():
    total = M.dynamic_model_size(2, [4, 2])
    assert M.blocks_for_budget(total, 1, 2) in (6, 7)
    assert M.blocks_for_budget(total, 4, 2) == 1
    with pytest.raises(ValueError, match="shares"):
        M.STDOJoint(k=3, shares=[1, 0])


def test_seeded_suite_repeats_only_trained_methods():
    pairs = list(R.seeded_suite(2, 3, [0, 1], stdo_ks=(2,), model_blocks=0, path_blocks=[1, 0], n_feats=4))
    first = [m.name for s, m in pairs if s == 0]
    second = [m.name for s, m in pairs if s == 1]
    assert first[:2] == ["bicubic", "general"] and second == first[2:]
    assert all(m.seed == s for s, m in pairs if m.trained)


def test_initial_weights_follow_the_seed(tiny_data):
    def first_weight(seed):
        m = M.PerVideo(n_blocks=0, n_feats=4, epochs=0.01, batch_size=2, seed=seed)
        m.prepare(tiny_data)
        return next(iter(m.units()[0].state_dict().values())).clone()

    assert (first_weight(0) == first_weight(0)).all()
    assert not (first_weight(0) == first_weight(1)).all()


def test_cafm_shares_one_backbone_and_runs_each_chunk_as_a_folded_network(tiny_data):
    m = M.CaFM(n_blocks=1, n_feats=4, expansion=2, epochs=0.3, batch_size=4, context=1)
    m.prepare(tiny_data)
    model = m.models()["CaFM[0]"]
    units = m.units()
    assert sorted(units) == [0, 1, 2]  # one network per chunk
    # training moved each chunk's modulation away from the identity, differently per chunk
    assert not torch.allclose(model.mod_scale[0], model.mod_scale[1])
    x = torch.rand(2, 3, 6, 7)
    with torch.no_grad():
        for c, net in units.items():
            assert torch.allclose(net(x), model(x, c), atol=1e-5)
    per_chunk = model.modulation_parameters_per_chunk()
    assert m.switch_bytes() == 4 * per_chunk
    per_chunk_models = M.PerChunk(n_blocks=1, n_feats=4, expansion=2, epochs=0.05, batch_size=4, context=1)
    per_chunk_models.prepare(tiny_data)
    assert per_chunk_models.switch_bytes() > 10 * m.switch_bytes()  # a whole model vs its modulation
    backbone = count_parameters(model.backbone)
    assert count_parameters(model) == backbone + 3 * per_chunk
    # the manifests route every patch and frame to its chunk's modulation
    ids = tiny_data.heldout_ids
    chunk_of = tiny_data.frame_table.set_index("frame").chunk
    fm = m.frame_manifest(ids)
    assert (fm.path.to_numpy() == chunk_of.loc[fm.frame].to_numpy()).all()


def test_registry_one_id_per_method_refs_and_names():
    assert R.parse("stdo:k=3") == R.Ref("stdo", 3) == R.parse("STDO k=3")
    assert R.parse("one model per video") == R.Ref("per_video") == R.parse("per_video")
    assert R.parse("STDO joint (k=4)") == R.Ref("stdo_joint", 4) and R.parse("stdo").k == 2
    assert R.parse("one model per chunk (= size)") == R.Ref("per_chunk", equal_size=True)
    assert R.parse("STDO joint") == R.Ref("stdo_joint", 4) and R.parse("STDO", {"stdo": 3}) == R.Ref("stdo", 3)
    assert R.make("STDO joint", 2, 4, joint_k=3, n_feats=4).name == "STDO joint (k=3)"
    with pytest.raises(TypeError):
        R.make("dydca", 2, 4, model_block=3)  # a misspelt keyword is an error, not ignored
    for bad in ("nope", "Dy-DCA (= size)", "STDO k="):
        with pytest.raises(ValueError):
            R.parse(bad)
    for ref in R.main_table(stdo_ks=(2, 4), joint_k=3, equal_size=True):
        assert R.parse(ref.name) == ref  # every display name reads back as its ref
    names = [m.name for m in R.method_suite(2, 4, stdo_ks=(2,), joint_k=2, equal_size=True, model_blocks=1,
                                            path_blocks=[2, 1], n_feats=4)]
    assert names == ["bicubic", "general", "one model per video", "one model per chunk", "CaFM", "STDO k=2",
                     "STDO joint (k=2)", "Dy-DCA", "one model per video (= size)", "one model per chunk (= size)",
                     "STDO k=2 (= size)"]
    assert R.Ref("per_chunk").separate_models(5) == 5 and R.Ref("stdo", 3).separate_models(5) == 3
    assert R.Ref("dydca").separate_models(5) == 1
