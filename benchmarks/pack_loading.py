"""Pack loading time (budget 50 ms) next to its floor, parsing the same YAML, in one run.

    python benchmarks/pack_loading.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from engine.packs import load_pack
from packs import OFFICIAL

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_seconds  # noqa: E402

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def median_ms(run, repeats: int) -> float:
    return median_seconds(run, repeats) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    print(f"{'pack':<12}{'load + lint ms':>16}{'YAML parse ms':>15}{'ratio':>7}   budget 50 ms")
    for folder in sorted(OFFICIAL.glob("*/pack.yaml")):
        text = folder.read_bytes()
        load = median_ms(lambda: load_pack(folder), args.repeats)
        parse = median_ms(lambda: yaml.load(text, Loader=_LOADER), args.repeats)
        verdict = "ok" if load <= 50 else "OVER"
        print(f"{folder.parent.name:<12}{load:>16.2f}{parse:>15.2f}{load / parse:>7.1f}   {verdict}")


if __name__ == "__main__":
    main()
