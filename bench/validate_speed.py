"""How long validation takes per preset (parse + summarize), in milliseconds. Not a test.

Run: python bench/validate_speed.py [--repeats 200] [--timeout 120]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness  # noqa: E402

from app.architectures.presets import list_presets  # noqa: E402
from app.architectures.summary import summarize  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=120, help="overall time limit in seconds (exit 124)")
    args = parser.parse_args()
    with harness.Watchdog(args.timeout):
        measure(args.repeats)


def measure(repeats: int) -> None:
    for preset in list_presets():
        summarize(preset.spec)  # warm up pydantic's validators
        started = time.perf_counter()
        for _ in range(repeats):
            summarize(preset.spec)
        per_call_ms = (time.perf_counter() - started) / repeats * 1000
        print(f"{preset.name:<20} {per_call_ms:7.3f} ms")


if __name__ == "__main__":
    main()
