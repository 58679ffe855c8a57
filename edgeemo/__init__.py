"""edgeemo: facial emotion recognition on the edge, published over MQTT."""

import os

__version__ = "0.1.0"

# OpenCV prints its own warnings straight to stderr ("[ WARN:0@5.1] global cap_ffmpeg_impl.hpp…"),
# without time or level, repeating what edgeemo's own messages say better. Set before any
# module imports cv2; OPENCV_LOG_LEVEL=INFO in the environment brings them back for debugging.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
