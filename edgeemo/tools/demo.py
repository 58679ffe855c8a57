"""`edgeemo demo`: the daemon on a demo clip, a local broker, every message printed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edgeemo.tools.devtools import free_port, make_demo_clip, mosquitto_path, start_broker


def _print_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
    text = msg.payload.decode(errors="replace")
    try:
        body = json.loads(text)
        if isinstance(body, dict) and msg.topic.endswith("/config"):
            text = f"{body.get('name')!r} ({msg.topic.split('/')[1]}) → {body.get('state_topic')}"
        else:
            text = json.dumps(body, separators=(",", ":"))
    except ValueError:
        pass
    retained = " [retained]" if msg.retain else ""
    print(f"{time.strftime('%H:%M:%S')} {msg.topic}{retained}  {text}", flush=True)


def run_demo(seconds: float) -> int:
    work = Path(os.environ.get("EDGEEMO_DEMO_DIR", ".cache/demo")).resolve()
    clip = work / "demo_clip.mp4"
    if not clip.exists():
        make_demo_clip(clip)
    port = free_port()
    broker = start_broker(port)
    kind = "mosquitto" if mosquitto_path() else "amqtt"
    config = work / "demo.yaml"
    config.write_text(
        "# written by `edgeemo demo`\n"
        f"mqtt: {{host: 127.0.0.1, port: {port}, stats_interval_s: 10, state_heartbeat_s: 15}}\n"
        f"state_dir: {work / 'state'}\n"
        f"cameras:\n  - {{name: demo, source: {clip}, loop: true, detect_fps: 5}}\n"
    )
    print(f"demo: broker {kind} on 127.0.0.1:{port}; clip {clip}; config {config}", flush=True)
    stop_note = "Ctrl-C stops it" if seconds <= 0 else f"runs {seconds:.0f} s, Ctrl-C stops it sooner"
    print(f"demo: the daemon starts now ({stop_note}); MQTT messages follow", flush=True)

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="edgeemo-demo-printer")
    sub.on_message = _print_message
    sub.on_connect = lambda c, *_: c.subscribe([("edgeemo/#", 1), ("homeassistant/#", 1)])
    sub.connect("127.0.0.1", port)
    sub.loop_start()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "edgeemo", "run", "--config", str(config)],
        start_new_session=True,  # Ctrl-C reaches us; we stop the daemon the way systemd would
    )
    try:
        deadline = time.monotonic() + seconds if seconds > 0 else float("inf")
        while daemon.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        print("\ndemo: stopping", flush=True)
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()
        time.sleep(0.5)  # let the last messages (availability offline) print
        sub.loop_stop()
        sub.disconnect()
        broker.terminate()
        broker.wait(5)
    print(f"demo: daemon exited with {daemon.returncode}", flush=True)
    return 0 if daemon.returncode == 0 else 1
