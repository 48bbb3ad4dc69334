"""package.xml declares only rosdep keys that exist for what the code imports (issue 12)."""

import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _depends():
    root = ET.parse(ROOT / "package.xml").getroot()
    return {e.text for e in root if e.tag.endswith("depend")}


def test_no_unused_or_unknown_dependencies():
    deps = _depends()
    assert "cv_bridge" not in deps  # images are decoded by dtp_stereo.ros.conversions
    assert "python3-onnxruntime" not in deps  # not a rosdep key: a pip requirement
    code = "\n".join(p.read_text() for p in (ROOT / "dtp_stereo").rglob("*.py"))
    assert "import cv_bridge" not in code and "from cv_bridge" not in code
    for key in ("rclpy", "sensor_msgs", "stereo_msgs", "diagnostic_msgs", "message_filters",
                "diagnostic_updater", "python3-numpy", "python3-opencv", "python3-torch"):
        assert key in deps, key
    pins = (ROOT / "requirements" / "constraints.txt").read_text()
    assert "onnxruntime==" in pins and "rosbags==" in pins  # the pip side of the two
