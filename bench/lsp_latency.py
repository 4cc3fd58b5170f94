"""Per-request latency of `ftc lsp` on the largest example, through a real stdio client session.

Each request is timed from the client's send to its answer (for diagnostics: to the publish that follows
an open or an edit; an edit's figure leaves out the server's debounce wait, reported beside it).
Target: every request under 0.3 s on the 2-core machine. Prints a table (median and max of N).
Run: python bench/lsp_latency.py [--runs 20] [--recipe PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from lsp_session import Session, position_of  # noqa: E402

from ftc.lsp.server import DEBOUNCE_S  # noqa: E402

TARGET_SECONDS = 0.3


def largest_example() -> Path:
    return max((REPO / "examples").glob("*.ftspec"), key=lambda p: p.stat().st_size)


async def _timed(samples: dict, name: str, coro):
    start = time.perf_counter()
    result = await coro
    samples.setdefault(name, []).append(time.perf_counter() - start)
    return result


def _anchor(text: str, *needles: str) -> tuple[int, int]:
    """The first of `needles` found in the text (examples differ), on its first character."""
    for needle in needles:
        if needle in text:
            return position_of(text, needle)
    return 0, 0


async def measure(recipe: Path, runs: int) -> dict[str, list[float]]:
    text = recipe.read_text()
    samples: dict[str, list[float]] = {}
    session = Session()
    start = time.perf_counter()
    await session.start(REPO)
    samples["start -> initialized (once)"] = [time.perf_counter() - start]
    try:
        for run in range(runs):
            uri = session.open(recipe, text)
            start = time.perf_counter()
            await session.next_diagnostics(uri)
            samples.setdefault("open -> diagnostics", []).append(time.perf_counter() - start)
            edited = text + f"\n# edit {run}\n"
            session.change(uri, edited)
            start = time.perf_counter()
            await session.next_diagnostics(uri)
            samples.setdefault("edit -> diagnostics (less debounce)", []).append(
                time.perf_counter() - start - DEBOUNCE_S)
            auto = _anchor(edited, "micro_batch", "lr")
            await _timed(samples, "hover field (micro_batch)", session.hover(uri, auto[0], auto[1] + 2))
            await _timed(samples, "hover hardware (memory)", session.hover(uri, *_anchor(edited, "hardware", "model")))
            await _timed(samples, "completion in method", session.complete(uri, *_anchor(edited, "  rank", "  dtype")))
            await _timed(samples, "formatting", session.format(uri))
            session.client.text_document_did_close(_close(uri))
            await session.next_diagnostics(uri)  # the close clears them: wait for it, so the next open is timed
    finally:
        await session.stop()
    return samples


def _close(uri: str):
    from lsprotocol import types

    return types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--recipe", type=Path, default=None)
    args = parser.parse_args()
    recipe = args.recipe or largest_example()
    samples = asyncio.run(measure(recipe.resolve(), args.runs))
    print(f"ftc lsp on {recipe.name}, {args.runs} runs (debounce {DEBOUNCE_S * 1000:.0f} ms)")
    print(f"{'request':40} {'median ms':>10} {'max ms':>10}")
    worst = 0.0
    for name, values in samples.items():
        if "(once)" not in name:  # the server's start is not a request
            worst = max(worst, max(values))
        print(f"{name:40} {statistics.median(values) * 1000:10.1f} {max(values) * 1000:10.1f}")
    verdict = "under" if worst < TARGET_SECONDS else "OVER"
    print(f"slowest answer {worst * 1000:.0f} ms: {verdict} the {TARGET_SECONDS * 1000:.0f} ms target")
    return 0 if worst < TARGET_SECONDS else 1


if __name__ == "__main__":
    raise SystemExit(main())
