"""The two pages in a real headless Chromium (Debian's chromium + chromium-driver, via Selenium):
the live view shows what a running file camera sees; the webcam page reads Chromium's fake
camera (fed from a video file of a face), asks /predict and draws the answer.

``EDGEEMO_SCREENSHOTS=docs`` keeps the screenshots there (how docs/web-*.png are made).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeemo.tools.devtools import astronaut_bgr, free_port, wait_port
from tests.web_helpers import WebDaemon, web_daemon_on_a_broker

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(
        not (CHROMIUM and DRIVER),
        reason="needs Debian's chromium and chromium-driver (make test installs them)",
    ),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="needs selenium (the dev extra)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def write_y4m(path: Path, frame_bgr: np.ndarray, frames: int = 20, fps: int = 10) -> Path:
    """A raw YUV 4:2:0 video, Chromium's fake-camera format (no encoder needed)."""
    h, w = frame_bgr.shape[:2]
    i420 = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2YUV_I420).tobytes()
    with path.open("wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(frames):
            f.write(b"FRAME\n" + i420)
    return path


def face_frame() -> np.ndarray:
    frame = np.full((480, 640, 3), 70, np.uint8)
    frame[:, 80:560] = cv2.resize(astronaut_bgr(), (480, 480), interpolation=cv2.INTER_AREA)
    return frame


def shot(driver: object, name: str, tmp: Path) -> Path:
    out = Path(os.environ.get("EDGEEMO_SCREENSHOTS") or tmp)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    return path


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[WebDaemon]:
    with web_daemon_on_a_broker(tmp_path_factory.mktemp("webui"), models_dir, {"snapshots": True}) as d:
        yield d
        d.proc.stop()


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    y4m = write_y4m(tmp_path_factory.mktemp("cam") / "face.y4m", face_frame())
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1000",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={y4m}",
    ):  # fmt: skip
        opts.add_argument(arg)
    # chromedriver started here and reached at 127.0.0.1: Selenium's own Service connects to
    # "localhost", which a minimal root without /etc/hosts cannot resolve (make test-fresh).
    port = free_port()
    service = subprocess.Popen(
        [str(DRIVER), f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    if not wait_port(port, 30):
        service.kill()
        raise AssertionError(f"{DRIVER} did not listen on 127.0.0.1:{port} within 30 s")
    d = webdriver.Remote(command_executor=f"http://127.0.0.1:{port}", options=opts)
    yield d
    d.quit()
    service.terminate()
    service.wait(10)


def test_live_view_shows_the_cameras_emotion(web: WebDaemon, driver, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    driver.get(web.base + "/")
    card = "#camera-astro"
    WebDriverWait(driver, 60).until(
        lambda d: d.find_element(By.CSS_SELECTOR, f"{card} .dominant").text == "happy"
    )
    assert driver.find_element(By.CSS_SELECTOR, f"{card} .faces").text == "1"
    assert driver.find_element(By.CSS_SELECTOR, f"{card} .status").text == "online"
    # Snapshots are on: the annotated frame is shown, loaded through the API.
    WebDriverWait(driver, 30).until(
        lambda d: (
            d.execute_script(
                "const i = document.querySelector(arguments[0]); return !i.hidden && i.naturalWidth;",
                f"{card} .snapshot",
            )
            == 512
        )
    )
    WebDriverWait(driver, 30).until(lambda d: d.find_element(By.ID, "health").text in ("ok", "degraded"))
    # The hall camera's visitor comes and goes: its events reach the page over SSE.
    WebDriverWait(driver, 60).until(
        lambda d: "face_entered" in d.find_element(By.CSS_SELECTOR, "#camera-hall ul.events").text
    )
    assert shot(driver, "web-live-view.png", tmp_path).stat().st_size > 10_000


def test_webcam_page_draws_the_predicted_emotion(web: WebDaemon, driver, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    driver.get(web.base + "/webcam")
    WebDriverWait(driver, 60).until(lambda d: d.find_element(By.ID, "emotion").text == "happy")
    assert driver.find_element(By.ID, "faces").text == "1 face(s)"
    # The box is drawn on the canvas in the emotion's colour, where /predict put it.
    color = driver.execute_script(
        """
        const [x, y, w, h] = last.faces[0].box;
        const p = document.getElementById('view').getContext('2d').getImageData(x + w / 2, y, 1, 1).data;
        return [p[0], p[1], p[2]];
        """
    )
    assert color == [0x57, 0xAB, 0x5A], color  # happy's colour in common.js
    assert shot(driver, "web-webcam.png", tmp_path).stat().st_size > 10_000
