"""Gather every notebook's tables and figures into ``results/<profile>/REPORT.md`` (and HTML).

The report only reads result files (never notebook outputs): each notebook folder's Markdown
tables, PNG figures and ``metrics.json``, plus the run's wall times. Sections follow the
notebooks; missing notebooks are listed as not run, never filled in.
"""

from __future__ import annotations

import json
from pathlib import Path

from .io import atomic_write_text
from .paths import results_dir
from .published import PAPER_CLAIMS

SECTIONS = {
    "01_data_chunking": "Data and chunking",
    "02_patch_clustering": "Content-aware patching",
    "03_dynamic_training": "One dynamic model",
    "04_baseline_comparison": "Main table: Dy-DCA vs the baselines",
    "04b_budget_study": "Budget study: PSNR vs training compute, seeds as bands",
    "05_tvm_compile_tune": "Compiler co-design (TVM)",
    "06_on_device": "On-device latency, memory and switching",
    "06_on_device_gpu": "The same client pipeline on a CUDA GPU (PyTorch)",
    "07_long_video": "Long video: when one model per video runs out of room (windows of a long clip, plateau training)",
    "08_rate_quality": "Rate–quality: LR video + models vs streaming the HR clip (H.264/H.265)",
    "08b_long_delivery": "Delivery on long content: windows streamed whole, models at their plateau and as shipped, VMAF",
}
NOT_RUN = {"06_on_device_gpu": "*not run: needs a CUDA GPU and this profile's cached models "
                               "(`python -m dydca_lib.bench.gpu --profile <profile>` on a GPU machine)*"}
REPORT_NOTEBOOK = "09_report"
# the tables worth reading first, per notebook (others are linked)
KEY_TABLES = {
    "01_data_chunking": ["chunks"],
    "02_patch_clustering": ["general_psnr_per_chunk", "stdo_bin_share", "dydca_path_share"],
    "03_dynamic_training": ["psnr", "psnr_per_path"],
    "04_baseline_comparison": ["main_table_full_frame", "main_table_patch_level", "dydca_vs_multi_model",
                               "published_stdo_readme"],
    "04b_budget_study": ["plateaus", "orderings"],
    "05_tvm_compile_tune": ["variants", "headline", "attempts"],
    "06_on_device": ["latency", "precision", "memory", "headline"],
    "06_on_device_gpu": ["latency"],
    "07_long_video": ["verdict", "crossover", "gaps", "summary", "plateaus"],
    "08_rate_quality": ["verdict", "bd_rate", "clean_vs_decoded"],
    "08b_long_delivery": ["verdict", "wins", "bd_rate", "cap_sensitivity", "anchors", "points"],
}


def _claims_table(profile_dir: Path) -> str:
    """The paper's systems claims beside what this run measured (where it measured them)."""
    rows = []
    for nb, key, claim, label in [
        ("05_tvm_compile_tune", "speedup_static_vs_dynamic", "compiler_speedup",
         "compiler speedup: static+fused+planned+tuned vs dynamic untuned build (x)"),
        ("05_tvm_compile_tune", "speedup_untuned_static_vs_dynamic", "compiler_speedup",
         "  of which static+fused+planned alone, untuned (x)"),
        ("06_on_device", "speedup_tvm_vs_torch_ref_dydca", "compiler_speedup",
         "TVM Dy-DCA vs PyTorch the reference way, per frame (x)"),
        ("05_tvm_compile_tune", "memory_ratio_dynamic_vs_static", "compiler_memory_saving",
         "planned memory, dynamic vs static build (x)"),
        ("06_on_device", "memory_saving_tvm_vs_torch_ref_dydca", "compiler_memory_saving",
         "peak RSS, PyTorch reference vs TVM client process (x)"),
        ("06_on_device", "fps_dydca_tvm", "fps_on_phone", "Dy-DCA frames per second on TVM (clip size; paper: 1080p, phone)"),
    ]:
        m = profile_dir / nb / "metrics.json"
        measured = "not run"
        if m.exists():
            headline = json.loads(m.read_text()).get("headline", {})
            measured = f"{headline[key]:.2f}" if key in headline else "not measured"
        rows.append(f"| {label} | {PAPER_CLAIMS[claim]} | {measured} |")
    rows += _fastest_client_rows(profile_dir)
    gpu = profile_dir / "06_on_device_gpu" / "metrics.json"
    if gpu.exists():  # measured on a GPU machine (python -m dydca_lib.bench.gpu), not on this CPU
        meta = json.loads(gpu.read_text())
        for res, fps in meta.get("headline", {}).get("fps_dydca", {}).items():
            if "torch_batched_cuda" in fps:
                rows.append(f"| Dy-DCA frames per second, PyTorch batched on {meta['device'].get('gpu')} ({res}) | "
                            f"{PAPER_CLAIMS['fps_on_phone']} | {fps['torch_batched_cuda']:.2f} (GPU) |")
    return ("| claim | paper (phone) | measured here (this CPU) |\n|---|---|---|\n" + "\n".join(rows) + "\n")


def _fastest_client_rows(profile_dir: Path) -> list[str]:
    """The paper's FPS beside Dy-DCA's fastest client within the PSNR tolerance of fp32 at each
    resolution notebook 06 ran (the paper's is 540p -> 1080p), with the CPU it ran on."""
    m = profile_dir / "06_on_device" / "metrics.json"
    if not m.exists():
        return []
    meta = json.loads(m.read_text())
    best = meta.get("headline", {}).get("fastest_client_within_0_05_db", {})
    cpu = meta.get("machine", {}).get("cpu_model", "this CPU")
    flags = meta.get("machine", {}).get("cpu_precision_flags")
    kind = f"{cpu}, {'AMX' if flags and 'amx_int8' in flags else 'no AMX'}" if flags is not None else cpu
    rows = []
    for method, per_res in best.items():
        if "Dy-DCA" not in method:
            continue
        for res, b in per_res.items():
            w = b["fastest_within_tolerance"]
            rows.append(f"| Dy-DCA FPS at {res} LR, fastest client within 0.05 dB of fp32 ({w['runtime']}, {w['precision']}; "
                        f"{kind}) | {PAPER_CLAIMS['fps_on_phone']} | {w['fps']:.2f} |")
    return rows


def _closing_verdict(root: Path) -> list[str]:
    """The sentence the report ends with: notebook 08b's answer (LR video + its models vs the HR
    stream, measured on long content), where that notebook ran."""
    d = root / "08b_long_delivery"
    if not ((d / "metrics.json").exists() and (d / "verdict.md").exists()):
        return []
    return ["## Verdict: LR video + one model vs streaming the HR video, on long content (`08b_long_delivery`)", "",
            (d / "verdict.md").read_text().strip(), ""]


def _run_line(root: Path) -> str | None:
    """What ``reproduce`` ran into this folder when it was not a profile as is (``runs/run.json``):
    the profile, the user's video and the ``-p`` overrides."""
    path = root / "runs" / "run.json"
    if not path.exists():
        return None
    run = json.loads(path.read_text())
    if not run.get("video") and not run.get("overrides"):
        return None
    what = [f"profile `{run['profile']}`"] + ([f"video `{run['video']}`"] if run.get("video") else [])
    what += [f"`{k}={json.dumps(v) if not isinstance(v, str) else v}`" for k, v in sorted(run.get("overrides", {}).items())]
    return "Run on " + ", ".join(what) + "; every other setting is the profile's."


def build_report(profile: str) -> Path:
    """``results/<profile>/REPORT.md`` and ``REPORT.html``; ``profile`` is the results folder's name
    (a profile, or ``<profile>-<video name>`` for a run on the user's video)."""
    root = results_dir(profile)
    run_line = _run_line(root)
    lines = [f"# Dy-DCA reproduction — {'results' if run_line else 'profile'} `{profile}`", "",
             *([run_line, ""] if run_line else []),
             ("Every number below was computed by this run's notebooks; tables name their protocol. "
              "Published numbers are shown only beside ours, for orientation."), ""]
    meta = None
    for nb in SECTIONS:
        if (root / nb / "metrics.json").exists():
            meta = json.loads((root / nb / "metrics.json").read_text())
            break
    if meta:
        lines += ["## Machine and versions", "",
                  f"- CPU: {meta['machine']['cpu_model']} ({meta['machine']['logical_cpus']} logical CPUs)",
                  f"- commit: `{meta['git_commit']}`",
                  "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()), ""]
    lines += ["## Paper claims vs this run", "", _claims_table(root)]
    for nb, title in SECTIONS.items():
        d = root / nb
        lines += [f"## {title} (`{nb}`)", ""]
        if not (d / "metrics.json").exists():
            lines += [NOT_RUN.get(nb, "*not run in this profile*"), ""]
            continue
        for t in KEY_TABLES.get(nb, []):
            if (d / f"{t}.md").exists():
                lines += [(d / f"{t}.md").read_text().strip(), ""]
        others = sorted(p.name for p in d.glob("*.md") if p.stem not in KEY_TABLES.get(nb, []))
        if others:
            lines += ["Other tables: " + ", ".join(f"[{o}]({nb}/{o})" for o in others), ""]
        for fig in sorted(d.glob("*.png")):
            lines += [f"![{fig.stem}]({nb}/{fig.name})", ""]
    timings = root / "runs" / "timings.json"  # written by `reproduce` after each notebook
    if timings.exists():
        walls = json.loads(timings.read_text())
        lines += ["## Wall time per notebook (last run, seconds)", "", "| notebook | wall_s |", "|---|---|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in sorted(walls.items())] + [f"| total | {sum(walls.values()):.1f} |", ""]
    lines += _closing_verdict(root)
    text = "\n".join(lines) + "\n"
    atomic_write_text(root / "REPORT.md", text)
    import mistune

    html = mistune.html(text)
    atomic_write_text(root / "REPORT.html", f"<!doctype html><meta charset='utf-8'><title>Dy-DCA {profile}</title>"
                                           f"<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}"
                                           f"table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px}}"
                                           f"img{{max-width:100%}}</style>{html}")
    return root / "REPORT.md"
