"""Build the tiny preference sets deterministically: right against wrong arithmetic, in words.

    python examples/tiny/build_preference.py   # rewrites examples/tiny/data/{preference,unpaired}.jsonl

Each question "What is three plus four?" gets a chosen answer with the right sum and a rejected one with a
wrong sum, a few wrong sums per question, so the held-out pairs ask questions the training pairs also ask
with other wrong answers: a preference objective has a real, measurable job (prefer the right sum), and
reward accuracy on held-out pairs starts near 0.5. The unpaired set (KTO) labels each answer on its own.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
           "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"]
WRONG_PER_QUESTION = 5


def pairs(seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for a in range(10):
        for b in range(10):
            question = [{"role": "user", "content": f"What is {NUMBERS[a]} plus {NUMBERS[b]}?"}]
            head = f"{NUMBERS[a].capitalize()} plus {NUMBERS[b]} is"
            wrong = rng.sample([n for n in range(19) if n != a + b], WRONG_PER_QUESTION)
            for w in wrong:
                rows.append({"prompt": question, "chosen": f"{head} {NUMBERS[a + b]}.",
                             "rejected": f"{head} {NUMBERS[w]}."})
    rng.shuffle(rows)
    return rows


def unpaired(rows: list[dict]) -> list[dict]:
    out, seen = [], set()
    for row in rows:
        for answer, label in ((row["chosen"], True), (row["rejected"], False)):
            key = (row["prompt"][0]["content"], answer)
            if key not in seen:
                seen.add(key)
                out.append({"prompt": row["prompt"], "completion": answer, "label": label})
    return out


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="utf-8")


if __name__ == "__main__":
    rows = pairs()
    write(HERE / "data" / "preference.jsonl", rows)
    write(HERE / "data" / "unpaired.jsonl", unpaired(rows))
