"""Start-up costs users feel: `import swift`, `swift --help`, `swift sft --help` (targets: 0.3 s, 0.5 s, 0.5 s),
`swift quickstart --help`, `swift web-ui --help` (0.5 s each), and `swift web-ui` until its page answers (--ui).

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
    "swift quickstart --help": [sys.executable, "-m", "swift", "quickstart", "--help"],
    "swift web-ui --help": [sys.executable, "-m", "swift", "web-ui", "--help"],
    "python (baseline)": [sys.executable, "-c", "pass"],
}
TARGETS = {"import swift": 0.3, "swift --help": 0.5, "swift sft --help": 0.5, "swift quickstart --help": 0.5,
           "swift web-ui --help": 0.5}


def web_ui_ready_time(timeout: float = 120.0) -> float:
    """Seconds from starting `swift web-ui` to its page answering HTTP 200 on a free port."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "swift", "web-ui", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - t < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
                    if r.status == 200:
                        return time.perf_counter() - t
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("swift web-ui did not answer")
    finally:
        proc.terminate()
        proc.wait(10)


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
    p.add_argument("--ui", action="store_true", help="also time `swift web-ui` until its page answers")
    a = p.parse_args()
    print(f"{'case':<24} {'median s':>9}  target")
    for name, cmd in CASES.items():
        t = median_time(cmd, a.repeat)
        target = TARGETS.get(name)
        verdict = "" if target is None else (f"<= {target}  " + ("ok" if t <= target else "MISSED"))
        print(f"{name:<24} {t:>9.3f}  {verdict}")
    if a.ui:
        print(f"{'swift web-ui (page up)':<24} {web_ui_ready_time():>9.3f}")


if __name__ == "__main__":
    main()
