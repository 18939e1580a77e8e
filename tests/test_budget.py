import math

import matplotlib
import pandas as pd
import pytest

from dydca_lib import budget, figures

matplotlib.use("Agg")


def _results(psnr_by_method: dict, seeds=(0, 1), jitter=0.02):
    """Long study rows: psnr_by_method = {method: [mean PSNR at budgets 1, 2, 4, ...]}."""
    rows = []
    for method, values in psnr_by_method.items():
        for i, v in enumerate(values):
            for s in seeds:
                rows.append({"method": method, "seed": s, "epochs": 2.0 ** i, "train_lr_megapixels": 3.0 * 2 ** i,
                             "train_seconds": 1.0, "frame_psnr_rgb": v + (jitter if s else -jitter)})
    return pd.DataFrame(rows)


def test_budget_grid_doubles_and_rejects_bad_ranges():
    assert budget.budget_grid(8, 1) == [1, 2, 4, 8]
    assert budget.budget_grid(2, 0.5) == [0.5, 1, 2]
    with pytest.raises(ValueError):
        budget.budget_grid(6, 1)
    with pytest.raises(ValueError):
        budget.budget_grid(1, 2)


@pytest.mark.parametrize("bad", [[], [1, 1], [0, 1], [-1]])
def test_check_budgets_rejects_empty_repeated_or_non_positive(bad):
    with pytest.raises(ValueError):
        budget.check_budgets(bad)


def test_curves_average_seeds_per_method_and_budget():
    c = budget.curves(_results({"A": [30.0, 31.0]}))
    assert list(c.epochs) == [1.0, 2.0]
    assert c["mean"].tolist() == pytest.approx([30.0, 31.0])
    assert c["std"].iloc[0] == pytest.approx(math.sqrt(2 * 0.02 ** 2))
    assert (c.seeds == 2).all() and c.lr_megapixels.tolist() == [3.0, 6.0]


def test_plateau_is_the_first_budget_after_which_every_doubling_gains_less_than_tol():
    curve = budget.curves(_results({"flat": [30.0, 31.0, 31.03, 31.05, 31.06],
                                    "late": [30.0, 30.5, 30.52, 31.0, 31.5]}))
    p = budget.plateaus(curve, tol_db=0.05).set_index("method")
    assert p.loc["flat", "plateau_epochs"] == 2.0 and p.loc["flat", "reached"]
    assert p.loc["flat", "psnr"] == pytest.approx(31.0)
    # a dip below tol early does not count when it gains again later: not reached, largest budget reported
    assert not p.loc["late", "reached"] and p.loc["late", "plateau_epochs"] == 16.0
    assert p.loc["late", "last_gain_db_per_doubling"] == pytest.approx(0.5)


def test_plateau_gain_is_per_doubling_on_uneven_grids():
    r = _results({"A": [30.0, 30.1]})
    r.loc[r.epochs == 2.0, "epochs"] = 4.0  # one step that is two doublings: 0.05 dB per doubling
    p = budget.plateaus(budget.curves(r), tol_db=0.06)
    assert p.reached.iloc[0] and p.plateau_epochs.iloc[0] == 1.0


def test_orderings_rank_at_each_budget_and_call_ties_within_twice_the_spread():
    curve = budget.curves(_results({"A": [30.0, 31.0, 31.5], "B": [30.5, 31.01, 31.2]}))
    o = budget.orderings(curve, budget.plateaus(curve))
    eq = o[o.rule == "equal compute"].set_index("epochs")
    assert eq.loc[1.0, "ranking"] == "B > A"
    assert eq.loc[2.0, "ranking"] == "B ≈ A"  # 0.01 dB apart, spread 0.04
    assert eq.loc[4.0, "ranking"] == "A > B"
    assert o.rule.iloc[-1].startswith("own plateau")


def test_settles_from_is_where_the_order_stops_changing():
    curve = budget.curves(_results({"A": [30.0, 31.0, 31.5, 31.6], "B": [30.5, 30.9, 31.2, 31.3]}))
    assert budget.settles_from(curve) == 2.0
    assert math.isnan(budget.settles_from(budget.curves(_results({"A": [30.0, 31.0], "B": [30.5, 29.0]}))))
    assert budget.settles_from(budget.curves(_results({"A": [31.0, 32.0], "B": [30.0, 31.0]}))) == 1.0
    assert math.isnan(budget.settles_from(budget.curves(_results({"A": [31.0], "B": [30.0]}))))


def test_summary_and_figure_from_the_same_curves():
    curve = budget.curves(_results({"Dy-DCA": [30.0, 31.0, 31.02], "one model per video": [30.2, 30.9, 31.3]}))
    p = budget.plateaus(curve)
    s = budget.summary(curve, p)
    assert s["plateau"]["Dy-DCA"] == {"epochs": 2.0, "reached": True, "psnr": 31.0}
    assert not s["plateau"]["one model per video"]["reached"]
    assert s["largest_budget"]["one model per video"] == pytest.approx(31.3)
    fig = figures.budget_curves(curve, p)
    assert len(fig.axes[0].lines) == 2
