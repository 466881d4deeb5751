"""How long validation takes per preset (parse + summarize), in milliseconds. Not a test.

Run: python bench/validate_speed.py
"""

from __future__ import annotations

import time

from app.architectures.presets import list_presets
from app.architectures.summary import summarize


def main(repeats: int = 200) -> None:
    for preset in list_presets():
        summarize(preset.spec)  # warm up pydantic's validators
        started = time.perf_counter()
        for _ in range(repeats):
            summarize(preset.spec)
        per_call_ms = (time.perf_counter() - started) / repeats * 1000
        print(f"{preset.name:<20} {per_call_ms:7.3f} ms")


if __name__ == "__main__":
    main()
