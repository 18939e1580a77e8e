"""`make reproduce` machinery on a one-notebook project: parameters, resume, report."""

import json

import nbformat
import pytest

from dydca_lib import overrides, profiles, reproduce


def tiny_project(root):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('profile: str = "t"  # profile\nvalue: int = 1  # a number')
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "from dydca_lib.io import ResultDir\nfrom dydca_lib.paths import results_dir\n"
        "out = ResultDir(results_dir(profile, '01_tiny'))\nout.json({'value': value}, 'metrics')\nout.commit()")
    nb.cells = [params, body]
    (root / "notebooks").mkdir()
    nbformat.write(nb, root / "notebooks" / "01_tiny.ipynb")
    (root / "params").mkdir()
    (root / "params" / "t.yaml").write_text("common: {profile: t}\nnotebooks:\n  01_tiny: {value: 7}\n")


def test_reproduce_runs_then_skips_then_reruns_on_change(tmp_root, capsys):
    tiny_project(tmp_root)
    reproduce.run("t")
    metrics = tmp_root / "results" / "t" / "01_tiny" / "metrics.json"
    assert json.loads(metrics.read_text()) == {"value": 7}
    assert (tmp_root / "results" / "t" / "runs" / "01_tiny.ipynb").exists()
    capsys.readouterr()
    reproduce.run("t")
    assert "up to date" in capsys.readouterr().out
    (tmp_root / "params" / "t.yaml").write_text("common: {profile: t}\nnotebooks:\n  01_tiny: {value: 8}\n")
    reproduce.run("t")
    assert json.loads(metrics.read_text()) == {"value": 8}


def test_unknown_parameters_are_errors(tmp_root):
    tiny_project(tmp_root)
    (tmp_root / "params" / "t.yaml").write_text("common: {profile: t}\nnotebooks:\n  01_tiny: {valeu: 8}\n")
    with pytest.raises(SystemExit, match="valeu"):
        reproduce.run("t")
    (tmp_root / "params" / "t.yaml").write_text("common: {profile: t, nonsense: 1}\nnotebooks:\n  01_tiny: {}\n")
    with pytest.raises(SystemExit, match="nonsense"):
        reproduce.run("t")
    with pytest.raises(SystemExit, match="no profile"):
        reproduce.run("missing")


def test_report_gathers_tables_and_says_what_did_not_run(tmp_root):
    from dydca_lib import report
    from dydca_lib.io import ResultDir
    from dydca_lib.paths import results_dir
    from dydca_lib.runinfo import run_metadata
    import pandas as pd

    out = ResultDir(results_dir("t", "01_data_chunking"))
    out.table(pd.DataFrame({"chunk": [0], "frames": [25]}), "chunks")
    out.json(run_metadata({"profile": "t"}, 0), "metrics")
    out.commit()
    text = report.build_report("t").read_text()
    assert "| chunk | frames |" in text and "| 0 | 25 |" in text
    assert text.count("*not run in this profile*") == len(report.SECTIONS) - 1 - len(report.NOT_RUN)
    assert "*not run: needs a CUDA GPU" in text
    assert "planned memory, dynamic vs static build (x) | 1.61 | not run |" in text
    assert (results_dir("t") / "REPORT.html").read_text().startswith("<!doctype html>")
    assert "## Verdict" not in text  # notebook 08b did not run


def test_report_ends_with_the_long_delivery_verdict(tmp_root):
    from dydca_lib import report
    from dydca_lib.io import ResultDir
    from dydca_lib.paths import results_dir
    from dydca_lib.runinfo import run_metadata

    sentence = "Dy-DCA, its int8 model bytes counted, beats HR x265 at equal VMAF and Y-PSNR — w: at no rate."
    out = ResultDir(results_dir("t", "08b_long_delivery"))
    out.text(sentence + "\n", "verdict.md")
    out.json(run_metadata({"profile": "t"}, 0), "metrics")
    out.commit()
    (results_dir("t") / "runs").mkdir(parents=True, exist_ok=True)
    (results_dir("t") / "runs" / "timings.json").write_text('{"08b_long_delivery": 12.0}')
    text = report.build_report("t").read_text()
    assert text.rstrip().endswith(sentence) and "| total | 12.0 |" in text


def test_report_sets_the_papers_fps_beside_the_fastest_client_per_resolution_and_cpu(tmp_root):
    from dydca_lib import report
    from dydca_lib.io import ResultDir
    from dydca_lib.paths import results_dir
    from dydca_lib.runinfo import run_metadata

    best = {"fastest_within_tolerance": {"runtime": "tvm_amx_int8", "precision": "int8", "fps": 15.25}}
    out = ResultDir(results_dir("t", "06_on_device"))
    meta = run_metadata({"profile": "t"}, 0, headline={"fastest_client_within_0_05_db": {"Dy-DCA": {"540p": best, "clip": {
        "fastest_within_tolerance": {**best["fastest_within_tolerance"], "fps": 40.0}}}, "one model per video": {"clip": best}}})
    meta["machine"].update(cpu_model="Intel(R) Xeon(R)", cpu_precision_flags=["avx512f", "amx_int8"])
    out.json(meta, "metrics")
    out.commit()
    text = report.build_report("t").read_text()
    assert ("| Dy-DCA FPS at 540p LR, fastest client within 0.05 dB of fp32 (tvm_amx_int8, int8; Intel(R) Xeon(R), AMX)"
            " | 33.0 | 15.25 |" in text)
    assert "Dy-DCA FPS at clip LR" in text and text.count("fastest client within 0.05 dB") == 2  # Dy-DCA's rows only


def test_compare_results_separates_measurements_from_results(tmp_path):
    import pandas as pd

    from dydca_lib.reproduce import compare_results

    a, b = tmp_path / "a" / "04", tmp_path / "b" / "04"
    a.mkdir(parents=True), b.mkdir(parents=True)
    pd.DataFrame({"method": ["x"], "psnr": [30.0], "median_ms": [1.0]}).to_csv(a / "t.csv", index=False)
    pd.DataFrame({"method": ["x"], "psnr": [30.0], "median_ms": [2.0]}).to_csv(b / "t.csv", index=False)
    pd.DataFrame({"psnr": [float("nan")]}).to_csv(a / "same.csv", index=False)
    pd.DataFrame({"psnr": [float("nan")]}).to_csv(b / "same.csv", index=False)
    pd.DataFrame({"psnr": [1.0]}).to_csv(a / "changed.csv", index=False)
    pd.DataFrame({"psnr": [1.5]}).to_csv(b / "changed.csv", index=False)
    pd.DataFrame({"psnr": [1.0]}).to_csv(a / "gone.csv", index=False)
    table = compare_results(tmp_path / "a", tmp_path / "b").set_index("table")
    assert table.loc["04/same.csv", "identical"]
    assert not table.loc["04/t.csv", "identical"] and table.loc["04/t.csv", "only_measurements"]
    assert table.loc["04/t.csv", "differing_columns"] == "median_ms"
    assert not table.loc["04/changed.csv", "identical"] and not table.loc["04/changed.csv", "only_measurements"]
    assert table.loc["04/gone.csv", "differing_columns"] == "(missing in b)"


# ---------------------------------------------------------------- your own video, -p overrides

def video_project(root):
    """Two notebooks shaped like the real ones: 01 takes ``video`` (and a patch it must fit), 04
    takes ``videos`` and ``general_clips``; the profile names registry clips like params/*.yaml."""
    def notebook(stem, params_src, names):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        cell = nbformat.v4.new_code_cell(params_src)
        cell.metadata["tags"] = ["parameters"]
        body = nbformat.v4.new_code_cell(
            "from dydca_lib.io import ResultDir\nfrom dydca_lib.paths import results_dir\n"
            f"out = ResultDir(results_dir(profile, '{stem}'))\n"
            f"out.json({{k: globals()[k] for k in {names!r}}}, 'metrics')\nout.commit()")
        nb.cells = [cell, body]
        nbformat.write(nb, root / "notebooks" / f"{stem}.ipynb")

    (root / "notebooks").mkdir()
    notebook("01_clip", 'profile: str = "v"  # results name\nvideo: str = "cityCC0"  # a clip\n'
             "scale: int = 2  # SR factor\npatch_size: int = 16  # LR patch side\nvalue: int = 1  # a number\n"
             "max_frames: int = 50  # frames\nfps: float = 0.0  # frame rate\nchunk_seconds: float = 1.0  # chunk\n"
             'heldout_every: int = 10  # held out\nheldout_policy: str = "interleaved"  # how',

             ["profile", "video", "value"])
    notebook("04_many", 'profile: str = "v"  # results name\nvideos: list = ["cityCC0"]  # clips\n'
             "general_clips: list = []  # registry clips\nepochs: float = 1.0  # passes",
             ["profile", "videos", "general_clips", "epochs"])
    (root / "params").mkdir()
    (root / "params" / "v.yaml").write_text(
        "common: {profile: v, video: cityCC0, general_clips: [demo, bikes]}\n"
        "notebooks:\n  01_clip: {}\n  04_many: {videos: [cityCC0, bikes], epochs: 2}\n")


@pytest.fixture
def fetched(monkeypatch):
    """Registry clips a run fetches (recorded, never downloaded)."""
    from dydca_lib import sources

    names = []
    monkeypatch.setattr(sources, "fetch_clip", lambda name, verbose=True: names.append(name))
    return names


def metrics_of(root, name, notebook):
    return json.loads((root / "results" / name / notebook / "metrics.json").read_text())


def test_own_video_runs_every_notebook_on_it_in_its_own_results_folder(tmp_root, synthetic_video, fetched,
                                                                       monkeypatch):
    video_project(tmp_root)
    monkeypatch.chdir(synthetic_video.parent)  # a relative path, as `make reproduce VIDEO=tiny.avi` gives
    reproduce.run("v", video="tiny.avi")
    video = str(synthetic_video)
    assert metrics_of(tmp_root, "v-tiny", "01_clip") == {"profile": "v-tiny", "video": video, "value": 1}
    assert metrics_of(tmp_root, "v-tiny", "04_many") == {"profile": "v-tiny", "videos": [video],
                                                          "general_clips": ["demo", "bikes"], "epochs": 2}
    assert not (tmp_root / "results" / "v").exists()  # the profile's own results are untouched
    assert fetched == ["demo", "bikes"]  # the registry clips the run still names; not cityCC0 or the video
    done = json.loads((tmp_root / "results" / "v-tiny" / "runs" / "01_clip.done.json").read_text())
    assert done["params"]["video"] == video
    assert json.loads((tmp_root / "results" / "v-tiny" / "runs" / "run.json").read_text()) == {
        "profile": "v", "video": video, "overrides": {}}
    # a -p override goes into the parameters and the results name; `value` is declared by 01 only
    reproduce.run("v", video=video, overrides={"value": 5, "epochs": 3})
    assert metrics_of(tmp_root, "v-tiny-epochs_3-value_5", "01_clip")["value"] == 5
    assert metrics_of(tmp_root, "v-tiny-epochs_3-value_5", "04_many")["epochs"] == 3.0  # float, as declared


def test_the_video_never_trains_the_general_model(tmp_root, synthetic_video, fetched):
    video_project(tmp_root)
    demo = synthetic_video.with_name("demo.avi")  # same name as a general_clips clip
    synthetic_video.rename(demo)
    reproduce.run("v", video=str(demo), only=["04"])
    assert metrics_of(tmp_root, "v-demo", "04_many")["general_clips"] == ["bikes"]
    assert fetched == ["bikes"]


def test_resume_key_includes_the_overrides(tmp_root, fetched, capsys):
    video_project(tmp_root)
    reproduce.run("v", only=["04"], overrides={"epochs": 3}, name="mine")
    capsys.readouterr()
    reproduce.run("v", only=["04"], overrides={"epochs": 3}, name="mine")
    assert "up to date" in capsys.readouterr().out
    reproduce.run("v", only=["04"], overrides={"epochs": 4}, name="mine")
    assert "up to date" not in capsys.readouterr().out
    assert metrics_of(tmp_root, "mine", "04_many")["epochs"] == 4.0
    assert not (tmp_root / "results" / "v").exists()


@pytest.mark.parametrize("make_bad, message", [
    (lambda d: d / "missing.mp4", "neither a known clip"),
    (lambda d: (d / "notes.mp4").write_text("not a video") and d / "notes.mp4", "could not be decoded"),
    (lambda d: d / "one.png", "single frame"),
    (lambda d: (d / "folder").mkdir() or d / "folder", "not a VSD4K-style one"),
    (lambda d: d / "small.avi", "smaller than one 16x16 patch"),
    (lambda d: d / "short.avi", "shorter than one 1 s chunk"),
])
def test_a_bad_video_is_one_clear_error_before_any_work(tmp_root, tmp_path, fetched, make_bad, message):
    import cv2
    import numpy as np

    video_project(tmp_root)
    cv2.imwrite(str(tmp_path / "one.png"), np.full((64, 64, 3), 128, np.uint8))
    for name, (w, h) in {"small.avi": (24, 24), "short.avi": (74, 50)}.items():  # 5 frames at 10 fps
        writer = cv2.VideoWriter(str(tmp_path / name), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
        for i in range(5):
            writer.write(np.full((h, w, 3), 20 * i, np.uint8))
        writer.release()
    with pytest.raises(SystemExit, match=message) as err:
        reproduce.run("v", video=str(make_bad(tmp_path)))
    assert str(err.value).startswith("video ")  # names what is wrong first
    assert not (tmp_root / "results").exists() and fetched == []  # nothing ran, nothing was fetched


def test_overrides_are_checked_by_name_and_type(tmp_root, fetched):
    video_project(tmp_root)
    types = profiles.parameter_types()
    assert overrides.parse_param("epochs=2.5", types) == ("epochs", 2.5)
    assert overrides.parse_param("videos=[a.mp4, b.mp4]", types) == ("videos", ["a.mp4", "b.mp4"])
    assert overrides.parse_param("video=2024", types) == ("video", "2024")  # a str parameter keeps the text
    with pytest.raises(SystemExit, match="name=value"):
        overrides.parse_param("epochs", types)
    with pytest.raises(SystemExit, match="did you mean epochs"):
        reproduce.run("v", overrides={"epoch": 2})
    with pytest.raises(SystemExit, match="epochs is float in 04_many"):
        reproduce.run("v", overrides={"epochs": "many"})
    with pytest.raises(SystemExit, match="results folder"):
        reproduce.run("v", overrides={"profile": "other"})
    with pytest.raises(SystemExit, match="not registry clips"):
        reproduce.run("v", overrides={"general_clips": ["nope"]})
    assert not (tmp_root / "results").exists()


def test_cli_video_and_param(tmp_root, synthetic_video, fetched):
    video_project(tmp_root)
    assert reproduce.main(["--profile", "v", "--video", str(synthetic_video), "-p", "value=7", "--only", "01"]) == 0
    assert metrics_of(tmp_root, "v-tiny-value_7", "01_clip")["value"] == 7
    with pytest.raises(SystemExit, match="no notebook declares"):
        reproduce.main(["--profile", "v", "-p", "nonsense=1"])


def test_report_names_the_profile_and_the_overrides(tmp_root):
    from dydca_lib import report
    from dydca_lib.io import atomic_write_text
    from dydca_lib.paths import results_dir

    atomic_write_text(results_dir("smoke-clip", "runs") / "run.json",
                      json.dumps({"profile": "smoke", "video": "/data/clip.mp4", "overrides": {"scale": 3}}))
    text = report.build_report("smoke-clip").read_text()
    assert text.startswith("# Dy-DCA reproduction — results `smoke-clip`")
    assert "Run on profile `smoke`, video `/data/clip.mp4`, `scale=3`" in text
