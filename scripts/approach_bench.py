#!/usr/bin/env python3
"""People walking up to a 1080p (or --size) camera: recall by face width and cost per frame in
the daemon's own chain, with the region approach (default) and with YuNet on every whole frame.

The clip (edgeemo/tools/approach.py: two walk-ups, face 14 -> 120 px, 3 s of empty room after
each) is written as MPEG-4 at the daemon's default 5 analysed frames per second and decoded
frame by frame as the file source does; each frame goes through ``FrameAnalyzer.process`` (motion
gate, still-face skipping, tracker, emotion model, aggregator). A frame's cost is its decode plus
its processing, one thread, OpenCV pinned to one thread too. A face counts as seen in a frame
when a box the frame reports (found, or held by the tracker on a skipped frame) overlaps it at
IoU >= 0.3. Rounds alternate the two modes. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edgeemo.analyzer import FrameAnalyzer
from edgeemo.config import Config
from edgeemo.detectors import iou_matrix
from edgeemo.modelstore import default_models_dir
from edgeemo.tools.approach import make_approach_clip

BINS = [(14, 20), (20, 28), (28, 40), (40, 56), (56, 80), (80, 121)]
FPS = 5.0


def run(clip: Path, truth: list, full_frame_every_s: float) -> dict:
    cfg = Config.model_validate(
        {
            "cameras": [{"name": "hall", "source": str(clip)}],
            "detector": {"full_frame_every_s": full_frame_every_s},
        }
    )
    analyzer = FrameAnalyzer.for_camera(cfg, "hall", default_models_dir())
    cap = cv2.VideoCapture(str(clip), cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, 1])
    ms, seen, analysed, events = [], {b: [0, 0] for b in BINS}, 0, []
    for i, box in enumerate(truth):
        t0 = time.perf_counter()
        ok, frame = cap.read()
        if not ok:
            break
        a = analyzer.process(frame, 1000.0 + i / FPS)
        ms.append((time.perf_counter() - t0) * 1000)
        analysed += a.analysed
        events += a.events
        if box is None:
            continue
        b = next((b for b in BINS if b[0] <= box[2] / (frame.shape[1] / 1920) < b[1]), None)
        if b is None:
            continue
        seen[b][1] += 1
        if len(a.boxes) and iou_matrix(box[None], a.boxes).max() >= 0.3:
            seen[b][0] += 1
    events += analyzer.end(1000.0 + len(truth) / FPS)
    return {
        "ms_per_frame_median": round(statistics.median(ms), 1),
        "ms_per_frame_p95": round(float(np.percentile(ms, 95)), 1),
        "ms_per_frame_mean": round(statistics.fmean(ms), 1),
        "frames_analysed": f"{analysed}/{len(ms)}",
        "recall_by_face_width": {
            f"{lo}-{hi - 1}": round(a / n, 3) if n else None for (lo, hi), (a, n) in seen.items()
        },
        "events": [e["event_type"] for e in events],
        "_ms": ms,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    size = tuple(int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "hall.mp4"
        truth = make_approach_clip(clip, size, fps=FPS)
        # Decode alone, for reference: what every mode pays before any analysis.
        cap = cv2.VideoCapture(str(clip), cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, 1])
        dec = []
        while True:
            t0 = time.perf_counter()
            ok, _ = cap.read()
            if not ok:
                break
            dec.append((time.perf_counter() - t0) * 1000)
        modes = {"regions (default)": 5.0, "whole frame every analysed frame": 1e-6}
        out: dict[str, dict] = {}
        for _ in range(args.rounds):
            for name, every in modes.items():
                r = run(clip, truth, every)
                if name in out:
                    out[name]["_ms"] += r["_ms"]
                else:
                    out[name] = r
        for r in out.values():
            ms = r.pop("_ms")
            r["ms_per_frame_median"] = round(statistics.median(ms), 1)
            r["ms_per_frame_p95"] = round(float(np.percentile(ms, 95)), 1)
            r["ms_per_frame_mean"] = round(statistics.fmean(ms), 1)
    print(
        json.dumps(
            {
                "size": args.size,
                "fps": FPS,
                "frames": len(truth),
                "decode_ms_median": round(statistics.median(dec), 1),
                "rounds": args.rounds,
                **out,
            }
        )
    )


if __name__ == "__main__":
    main()
