"""Build swift/assets/data/calibration.txt: the built-in calibration and held-out text of `swift export`.

It is the project's own documentation (English and Chinese prose; code blocks, tables and headings removed), one
paragraph per line, in a fixed shuffled order so English and Chinese mix evenly. Run from the repo root:

    python scripts/make_calibration_text.py
"""
from __future__ import annotations

import random
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "swift" / "assets" / "data" / "calibration.txt"


def paragraphs(doc: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", doc.read_text(encoding="utf-8"), flags=re.S)
    out = []
    for block in re.split(r"\n\s*\n", text):
        para = " ".join(line.strip() for line in block.splitlines()).strip()
        if len(para) < 80 or para.startswith(("|", "#")) or "{{" in para:  # no template placeholders
            continue
        para = re.sub(r"`([^`]*)`", r"\1", para)
        out.append(re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", para))
    return out


def main() -> None:
    paras = [p for lang in ("en", "zh") for doc in sorted((ROOT / "docs" / lang).glob("*.md")) for p in paragraphs(doc)]
    random.Random(0).shuffle(paras)
    OUT.write_text("\n".join(paras) + "\n", encoding="utf-8")
    print(f"{OUT}: {len(paras)} paragraphs, {sum(map(len, paras))} characters")


if __name__ == "__main__":
    main()
