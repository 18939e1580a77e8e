import math

import pandas as pd
import pytest

from dydca_lib import comparison


def _rows(method, values, params=100, models=1, gflop=1.0):
    return [{"video": "v", "scale": 2, "method": method, "seed": i, "models": models, "parameters": params,
             "model_bytes": 4 * params, "routing_map_bytes": 0, "gflop_per_frame": gflop,
             "frame_psnr_rgb": f, "patch_psnr_rgb": f + 0.1} for i, f in enumerate(values)]


def test_over_seeds_means_and_sample_std():
    r = pd.DataFrame(_rows("bicubic", [30.0], params=0) + _rows("Dy-DCA", [31.0, 31.2]))
    agg = comparison.over_seeds(r).set_index("method")
    assert list(agg.index) == ["bicubic", "Dy-DCA"]
    assert agg.loc["Dy-DCA", "frame_psnr_rgb"] == pytest.approx(31.1)
    assert agg.loc["Dy-DCA", "frame_psnr_rgb_std"] == pytest.approx(0.1414, abs=1e-3)
    assert agg.loc["Dy-DCA", "seeds"] == 2 and agg.loc["bicubic", "seeds"] == 1
    assert math.isnan(agg.loc["bicubic", "frame_psnr_rgb_std"])


def test_main_table_writes_mean_and_std_only_where_seeded():
    r = pd.DataFrame(_rows("bicubic", [30.0], params=0, gflop=0.0) + _rows("Dy-DCA", [31.0, 31.2], gflop=23.14))
    t = comparison.main_table(r, "frame_psnr_rgb").set_index("method")
    assert t.loc["Dy-DCA", "v x2"] == "31.10 ± 0.14"
    assert t.loc["bicubic", "v x2"] == 30.0
    assert t.loc["Dy-DCA", "gflop_per_frame"] == 23.14


@pytest.mark.parametrize("gap,spread,expected", [(0.05, 0.03, "tie"), (0.10, 0.03, "Dy-DCA better"),
                                                 (-0.10, 0.03, "Dy-DCA worse"), (0.5, float("nan"), "no spread (1 seed)")])
def test_reading_calls_a_tie_within_twice_the_spread(gap, spread, expected):
    assert comparison.reading(gap, spread) == expected


def test_verdicts_use_the_spread_of_both_methods():
    r = pd.DataFrame(_rows("Dy-DCA", [31.0, 31.2]) + _rows("STDO k=2", [31.05, 31.25], models=2)
                     + _rows("one model per video", [32.0, 32.02]))
    v = comparison.verdicts(r)
    frame = v[v.protocol == "frame_psnr_rgb"].set_index("vs")
    assert frame.loc["STDO k=2", "reading"] == "tie"
    assert frame.loc["STDO k=2", "spread_db"] == pytest.approx(0.2, abs=1e-3)
    assert frame.loc["one model per video", "reading"] == "Dy-DCA worse"
    assert frame.loc["STDO k=2", "other_models"] == 2 and frame.loc["STDO k=2", "seeds"] == 2


def test_verdicts_need_a_dydca_row():
    with pytest.raises(ValueError, match="no Dy-DCA row"):
        comparison.verdicts(pd.DataFrame(_rows("STDO k=2", [31.0])))
