"""The preference part of `ftc data`: what was cut or dropped, and the length histograms of prompts and of
each answer, side by side, so a chosen answer that is always longer than the rejected one shows at a glance."""

from __future__ import annotations


def preference_lines(p: dict, width: int = 40) -> list[str]:
    lines = []
    if p.get("max_prompt_length"):
        lines.append(f"  prompts cut          {p['prompt_cut']:>12,}   (to their last {p['max_prompt_length']} tokens)")
    lines.append(f"  answers cut          {p['answer_cut']:>12,}   (to fit max_length after the prompt)")
    lines.append("  mean tokens          " + ", ".join(f"{k} {v:g}" for k, v in p["mean_lengths"].items()))
    for name, hist in p["histograms"].items():
        counts, edges = hist["counts"], hist["edges"]
        if not sum(counts):
            continue
        lines.append(f"  {name} lengths (train, tokens):")
        top = max(counts)
        for i, c in enumerate(counts):
            if c == 0 and i and i < len(counts) - 1 and not any(counts[i:]):
                break
            bar = "#" * round(c / top * width)
            lines.append(f"    {edges[i]:>6}-{edges[i + 1] - 1:<6} {bar:<{width}} {c:,}")
    return lines


def preference_warnings(p: dict | None) -> list[str]:
    """Warnings `ftc data` prints: pairs that could not teach anything were dropped."""
    if not p:
        return []
    out = []
    if p.get("identical"):
        out.append(f"warning: {p['identical']:,} pair(s) had identical chosen and rejected answers (dropped: "
                   "they carry no preference)")
    if p.get("emptied"):
        out.append(f"warning: {p['emptied']:,} row(s) had an answer cut to nothing by max_length after the prompt "
                   "(dropped); lower max_prompt_length or raise max_length")
    return out
