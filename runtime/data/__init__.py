"""The data pipeline: recipe `data` block -> training-ready, cached data sets with a report.

    from ftc.runtime.data import prepare
    prepared = prepare(plan.raw["data"], tokenizer, base_dir=plan.folder, cache_dir=cache)
"""

from .errors import DataError
from .pipeline import PreparedData, default_cache_dir, prepare
from .report import DataReport, render_text, save_png
from .spec import DataSpec

__all__ = ["DataError", "DataReport", "DataSpec", "PreparedData", "default_cache_dir", "prepare", "render_text",
           "save_png"]
