"""The data report: what prepare did to the data, as a frozen value; text and PNG renderings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass(frozen=True)
class Histogram:
    edges: tuple[int, ...]  # len(counts) + 1
    counts: tuple[int, ...]

    @staticmethod
    def of(lengths: np.ndarray, max_length: int, bins: int = 16) -> "Histogram":
        edges = np.linspace(0, max_length, bins + 1).round().astype(np.int64)
        edges[-1] = max(max_length, int(lengths.max()) if len(lengths) else 0) + 1
        counts, _ = np.histogram(lengths, bins=edges)
        return Histogram(tuple(int(e) for e in edges), tuple(int(c) for c in counts))


@dataclass(frozen=True)
class BadRow:
    file: str
    row: int
    unit: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.row}" if self.unit == "line" else f"{self.file} (row {self.row})"
        return f"{where}: {self.problem}"


@dataclass(frozen=True)
class SplitStats:
    rows: int  # examples after everything
    tokens: int  # real tokens
    trained_tokens: int  # tokens inside the loss mask
    packed_rows: int | None  # rows after packing, None when not packed
    slots: int  # token slots the model will see: packed rows x max_length, or the real tokens when padded dynamically


@dataclass(frozen=True)
class DataReport:
    format: str
    sources: tuple[str, ...]
    rows_read: int
    bad_rows: int
    bad_row_examples: tuple[BadRow, ...]
    duplicates_exact: int
    duplicates_near: int
    train: SplitStats
    eval: SplitStats | None
    eval_source: str  # "split" | "files" | "none"
    truncated: int  # cut to max_length
    dropped_too_long: int  # removed by truncation = drop
    dropped_untrainable: int  # nothing left inside the loss mask
    max_length: int
    packing: bool
    packing_efficiency: float | None  # real tokens / slots of packed rows
    length_percentiles: dict = field(default_factory=dict)  # p50, p90, p99, max of example lengths (train)
    histogram: Histogram | None = None
    cache_key: str = ""
    cache_hit: bool = False
    preference: dict | None = None  # preference formats: cuts, dropped pairs, per-part length histograms

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "DataReport":
        d = dict(d)
        d["sources"] = tuple(d["sources"])
        d["bad_row_examples"] = tuple(BadRow(**b) for b in d["bad_row_examples"])
        d["train"] = SplitStats(**d["train"])
        d["eval"] = SplitStats(**d["eval"]) if d.get("eval") else None
        if d.get("histogram"):
            d["histogram"] = Histogram(tuple(d["histogram"]["edges"]), tuple(d["histogram"]["counts"]))
        return DataReport(**d)


def render_text(report: DataReport, width: int = 40) -> str:
    """The report for a terminal, with a bar histogram of example lengths."""
    r = report
    lines = [f"data: {r.format}, {len(r.sources)} source(s){' (cached)' if r.cache_hit else ''}"]
    lines.append(f"  rows read            {r.rows_read:>12,}")
    lines.append(f"  bad rows skipped     {r.bad_rows:>12,}")
    for b in r.bad_row_examples[:5]:
        lines.append(f"    {b}")
    lines.append(f"  duplicates exact     {r.duplicates_exact:>12,}")
    lines.append(f"  duplicates near      {r.duplicates_near:>12,}")
    lines.append(f"  truncated            {r.truncated:>12,}   (to {r.max_length} tokens)")
    if r.dropped_too_long:
        lines.append(f"  dropped, too long    {r.dropped_too_long:>12,}")
    if r.dropped_untrainable:
        lines.append(f"  dropped, no target   {r.dropped_untrainable:>12,}")
    for name, s in (("train", r.train), ("eval", r.eval)):
        if s is None:
            continue
        packed = f", {s.packed_rows:,} packed rows" if s.packed_rows is not None else ""
        lines.append(f"  {name:<5} examples       {s.rows:>12,}   {s.tokens:,} tokens, {s.trained_tokens:,} trained{packed}")
    if r.packing_efficiency is not None:
        lines.append(f"  packing efficiency   {r.packing_efficiency:>12.1%}   (real tokens / slots)")
    if r.length_percentiles:
        p = r.length_percentiles
        lines.append("  lengths              " + ", ".join(f"{k} {p[k]:,}" for k in ("p50", "p90", "p99", "max") if k in p))
    if r.histogram and sum(r.histogram.counts):
        lines.append("  example lengths (train, tokens):")
        top = max(r.histogram.counts)
        e = r.histogram.edges
        for i, c in enumerate(r.histogram.counts):
            bar = "#" * (round(c / top * width) if top else 0)
            lines.append(f"    {e[i]:>6}-{e[i + 1] - 1:<6} {bar:<{width}} {c:,}")
    if r.preference is not None:
        from .preference_report import preference_lines

        lines += preference_lines(r.preference, width)
    lines.append(f"  cache                {r.cache_key[:16]}")
    return "\n".join(lines)


def save_png(report: DataReport, path) -> None:
    """Length histogram as a PNG (matplotlib, headless)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = report.histogram
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    if h is not None:
        ax.bar(h.edges[:-1], h.counts, width=np.diff(h.edges), align="edge", edgecolor="black", linewidth=0.4)
        ax.axvline(report.max_length, color="red", linestyle="--", linewidth=1, label=f"max_length {report.max_length}")
        ax.legend()
    ax.set_xlabel("tokens per example")
    ax.set_ylabel("examples")
    eff = f", packing {report.packing_efficiency:.1%}" if report.packing_efficiency is not None else ""
    ax.set_title(f"train: {report.train.rows:,} examples, {report.train.tokens:,} tokens{eff}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
