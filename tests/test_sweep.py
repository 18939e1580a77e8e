"""A real Dask LocalCluster of 2 worker processes on 127.0.0.1: a small sweep of real cells,
a retried failure, a killed worker and a job that keeps failing, then a clean shutdown."""

import pytest

from dydca_lib import budget, cells, sweep

from .test_cells import TINY

distributed = pytest.importorskip("distributed")


def budget_params(video, **changes):
    return {**TINY, "video": str(video), "scale": 2, "methods": ["one model per video", "Dy-DCA"],
            "budgets": [0.1, 0.2], "seeds": [0], "joint_k": 2, "joint_shares": [], "model_blocks": 0,
            "model_feats": 4, "model_expansion": 2, "path_blocks": [1, 0], "batch_size": 4,
            "learning_rate": 1e-3, "context": 1, **changes}


@pytest.fixture
def cluster(tmp_root):
    """Workers inherit DYDCA_ROOT (tmp_root), so they write cells and logs under the test's folder."""
    c = sweep.local_cluster(2)
    client = distributed.Client(c)
    yield client
    client.close()
    c.close()


def test_local_cluster_listens_on_loopback_only(cluster):
    info = cluster.scheduler_info()
    addresses = [cluster.scheduler.address, *info["workers"]]
    assert len(info["workers"]) == 2
    assert all(a.startswith(("tcp://127.0.0.1:", "inproc://")) for a in addresses), addresses


def test_sweep_runs_cells_retries_failures_and_reports_the_rest(cluster, synthetic_video, tmp_root):
    specs = budget.budget_specs(budget_params(synthetic_video))
    real = [sweep.Job(f"budget {s['method']} {s['epochs']}", "budget", s, phase=1) for s in specs]
    prepare = sweep.prepare_jobs(specs)
    assert len(prepare) == 1 and prepare[0].phase == 0
    probes = sweep.probe_jobs(3, failures={0: "fail_once", 1: "crash_once", 2: "fail_always"})
    lines = []
    report = sweep.run_sweep(prepare + real + probes, cluster, threads=1, retries=2, echo=lines.append)
    assert lines[1].endswith("prepare tiny x2: ok")  # phase 0 ends before any cell starts

    # the four real runs are done, as files the notebook reads back, with the numbers a serial run computes
    assert len(real) == 4 and all(j.done() for j in real)
    rows = [budget.budget_cell(s) for s in specs]
    assert [(r["method"], r["epochs"]) for r in rows] == [(s["method"], s["epochs"]) for s in specs]
    assert all(10 < r["frame_psnr_rgb"] < 60 for r in rows)
    # a failure on the first try is retried; a worker killed mid-job is replaced and the job rescheduled
    by_name = {r["job"]: r for r in report["results"]}
    assert by_name["probe 0"]["status"] == "done" and by_name["probe 0"]["attempt"] == 2
    assert by_name["probe 1"]["status"] == "done" and by_name["probe 1"]["attempt"] == 2
    # a job failing on every try is reported with its error and log, and the sweep still finished the rest
    assert [f["job"] for f in report["failed"]] == ["probe 2"]
    assert "injected failure (attempt 3)" in report["failed"][0]["error"]
    assert "attempt 3" in report["failed"][0]["log"]
    assert len(report["results"]) == 7 and any("FAILED probe 2" in line for line in lines)

    # idempotent: a second sweep of the same cells skips them all
    again = sweep.run_sweep(real, cluster, echo=lines.append)
    assert again["skipped"] == 4 and again["results"] == [] and again["failed"] == []


def test_cli_dry_run_lists_notebook_04s_cells(tmp_root, synthetic_video, monkeypatch, capsys):
    from .test_cells import nb04_params

    seen = {}

    def effective(profile, stem, video=None, overrides=None):
        seen.update(profile=profile, stem=stem, overrides=overrides)
        return nb04_params(synthetic_video)

    monkeypatch.setattr(sweep, "_effective", effective)
    assert sweep.main(["--profile", "default", "--grid", "comparison", "-p", "epochs=2", "--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert seen == {"profile": "default", "stem": "04_baseline_comparison", "overrides": {"epochs": 2}}
    assert [line.split()[0] for line in out] == ["todo", "todo", "todo"]
    assert out[0].endswith("prepare tiny x2")  # the clip's shared inputs first, then the cells
    assert out[1].endswith("comparison tiny x2 seed 0") and out[2].endswith("comparison tiny x2 seed 1")


def test_rate_quality_grid_lists_anchors_then_points_after_the_prepare_job(monkeypatch):
    from .test_delivery import nb08_params

    monkeypatch.setattr(sweep, "_effective", lambda profile, stem, video=None, overrides=None: nb08_params("tiny.avi"))
    jobs = sweep.rate_quality_jobs("default")
    assert [j.name for j in jobs] == ["prepare tiny x2", "anchor tiny yuv420 crf None", "anchor tiny x264 crf 30",
                                      "anchor tiny x264 crf 40", "rate-quality tiny x264 crf 30", "rate-quality tiny x264 crf 40"]
    assert [j.phase for j in jobs] == [0, 1, 1, 1, 1, 1] and {j.kind for j in jobs[1:]} == {"anchor", "ratequality"}


def test_wall_time_estimate_packs_longest_jobs_first():
    assert sweep.makespan_s([3, 3, 2, 2], 2) == 5 and sweep.makespan_s([1] * 10, 3) == 4
    assert sweep.makespan_s([3, 3, 2, 2, 2], 2) == 7  # greedy; the best packing is 6 (3+3 | 2+2+2)
    t = sweep.wall_time_estimate({"cell": (10, 3600.0), "run": (64, 360.0)}, workers=(1, 8, 64)).set_index("job type")
    assert t.loc["cell", "1 workers (h)"] == 10 and t.loc["cell", "8 workers (h)"] == 2 and t.loc["cell", "64 workers (h)"] == 1
    assert t.loc["run", "8 workers (h)"] == 0.8 and t.loc["run", "64 workers (h)"] == 0.1
    # together: the runs fill the gaps the cells leave
    assert t.loc["all", "jobs"] == 74 and t.loc["all", "1 workers (h)"] == 16.4
    assert t.loc["all", "8 workers (h)"] == 2.1 and t.loc["all", "64 workers (h)"] == 1.0
