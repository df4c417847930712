"""How fast the DSL answers: valid programs and adversarial inputs (each must be answered well under a
second with a Graph or a DSLError). Writes benchmarks/results/parser-<machine>.md.

    python benchmarks/parser.py [--repeats N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import markdown_table, write_result

import evonorm_search as es

REPEATS = 5  # runs per input; the table shows their median

CASES = {
    "evonorm_s0 (valid)": es.library.source("evonorm_s0"),
    "gn_silu with a temporary (valid)": es.library.source("gn_silu"),
    "1,000-node chain (valid)": "a0 = x\n" + "".join(f"a{i} = tanh(a{i - 1}) + x\n" for i in range(1, 334)) + "a333",
    "1 MB of whitespace then x": " " * 999_990 + "x",
    "1 MB + 1 byte": "x" + " " * 1_000_000,
    "1 MB of 'x+x+...'": "x+" * 499_999 + "x",
    "1 MB of unary minus": "-" * 999_999 + "x",
    "100,000 nested calls": "exp(" * 100_000 + "x" + ")" * 100_000,
    "1 MB of random bytes": os.urandom(1_000_000),
    "1 MB of newlines": "\n" * 999_999 + "x",
    "unbalanced: 500,000 '('": "(" * 500_000,
    "unknown function": "x * sigmod(x)",
}


def measure(text: str | bytes, repeats: int) -> tuple[float, str]:
    times = []
    outcome = ""
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            g = es.parse(text)
            outcome = f"graph, {len(g)} nodes"
        except es.DSLError as e:
            outcome = f"DSLError: {e.message[:60]}"
        times.append(time.perf_counter() - start)
    return statistics.median(times), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS, help="runs of `es.parse` per input")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    rows = []
    for name, text in CASES.items():
        median, outcome = measure(text, args.repeats)
        rows.append([name, f"{len(text):,}", f"{median * 1000:.1f}", outcome])
        print(f"{name:40s} {median * 1000:8.1f} ms  {outcome}")
    body = f"Median of {args.repeats} runs of `es.parse` per input, no cache.\n\n" + markdown_table(
        ["input", "bytes", "median ms", "answer"], rows
    )
    print("wrote", write_result("parser", "DSL parser: time to answer", body))


if __name__ == "__main__":
    main()
