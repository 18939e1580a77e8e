"""Published numbers, for orientation only (other data and protocols: never mixed into our columns).

STDO README (VSD4K 15 s clips, WDSR, PSNR dB on RGB training frames, patch-level protocol); its
CaFM and NAS rows are STDO's re-runs. Copied from the project's method notes. The STDO game x3
value (37.04) is below its own x4 value and is likely a typo in the source.
"""

import pandas as pd

STDO_README = pd.DataFrame(
    [
        ("awDNN", 43.36, 37.12, 34.62, 44.83, 39.05, 35.23, 49.24, 45.30, 43.33),
        ("NAS", 44.17, 38.23, 36.02, 45.43, 39.71, 36.54, 49.98, 45.63, 43.51),
        ("CaFM", 44.23, 38.55, 36.30, 45.71, 39.92, 36.87, 50.12, 45.87, 43.79),
        ("STDO", 45.75, 37.04, 38.62, 46.34, 41.13, 38.76, 50.58, 46.43, 44.62),
    ],
    columns=["method", "game15 x2", "game15 x3", "game15 x4", "inter15 x2", "inter15 x3", "inter15 x4",
             "vlog15 x2", "vlog15 x3", "vlog15 x4"],
)

PAPER_CLAIMS = {
    "fps_on_phone": 33.0,
    "compiler_speedup": 1.7,
    "compiler_memory_saving": 1.61,
}
