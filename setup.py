"""dtp_stereo: an ament_python ROS 2 package and a pip package.

`colcon build` installs the runtime (dtp_stereo) plus launch/config/model data files; ROS dependencies come from
package.xml (rosdep). `pip install -e .[ros,onnx,training,dev]` installs the same code in a plain venv; the ROS 2
Python packages then come from PyPI (Kilted wheels). Install torch first (see requirements/constraints.txt).
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "dtp_stereo"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Distilled and pruned real-time stereo matching with a ROS 2 node",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["dtp_stereo", "dtp_stereo.*", "training", "training.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/models", glob("models/*.pt") + glob("models/*.json") + glob("models/*.yaml")),
    ],
    install_requires=[
        "numpy>=1.24",
        "PyYAML>=6",
        "opencv-python-headless>=4.8",
        "torch>=2.1",
    ],
    extras_require={
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17", "onnxscript>=0.1"],
        "ros": [
            "rosbags>=0.10",
            "ros-rclpy", "ros-rmw-fastrtps-cpp", "ros-sensor-msgs", "ros-stereo-msgs",
            "ros-diagnostic-msgs", "ros-std-msgs", "ros-geometry-msgs",
        ],
        "training": ["torch-pruning>=1.5", "tensorboard>=2.14", "tqdm>=4.66", "matplotlib>=3.8"],
        "dev": ["pytest>=8", "flake8>=7"],
    },
    zip_safe=True,
    maintainer="dtp_stereo developers",
    maintainer_email="dtp-stereo@example.com",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "stereo_node = dtp_stereo.node:main",
            "dtp-stereo = dtp_stereo.cli.main:main",
            "dtp-train = training.cli:main",
        ],
    },
)
