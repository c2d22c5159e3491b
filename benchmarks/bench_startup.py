"""Start-up costs users feel: `import swift`, `swift --help`, `swift sft --help` (targets: 0.3 s, 0.5 s, 0.5 s).

    python benchmarks/bench_startup.py [--repeat 5]

Each figure is the median wall time of a fresh interpreter over --repeat runs.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "import swift": [sys.executable, "-c", "import swift"],
    "swift --help": [sys.executable, "-m", "swift", "--help"],
    "swift sft --help": [sys.executable, "-m", "swift", "sft", "--help"],
    "python (baseline)": [sys.executable, "-c", "pass"],
}
TARGETS = {"import swift": 0.3, "swift --help": 0.5, "swift sft --help": 0.5}


def median_time(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args()
    print(f"{'case':<20} {'median s':>9}  target")
    for name, cmd in CASES.items():
        t = median_time(cmd, a.repeat)
        target = TARGETS.get(name)
        verdict = "" if target is None else (f"<= {target}  " + ("ok" if t <= target else "MISSED"))
        print(f"{name:<20} {t:>9.3f}  {verdict}")


if __name__ == "__main__":
    main()
