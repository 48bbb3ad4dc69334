"""Launch dtp_stereo_node: deep stereo on rectified image pairs.

Example:
    ros2 launch dtp_stereo stereo.launch.py namespace:=stereo backend:=tensorrt \\
        left_image:=/camera/left/image_rect right_image:=/camera/right/image_rect \\
        left_info:=/camera/left/camera_info right_info:=/camera/right/camera_info

Parameters come from ``params_file`` (default: the package's config/params.yaml); the
``backend``, ``checkpoint``, ``engine_cache_dir``, ``onnx_path``, ``device``, ``head`` and ``fp16``
arguments override it only when non-empty. The default model (models/dtpnet_real_pruned_s11.pt)
has the fast regression head; ``checkpoint:=legacy_d64`` (or another name of
``dtp_stereo.assets.OPERATING_POINTS``, or a path) selects another model (docs/results.md).

Camera-sized images between processes: with Fast DDS defaults, messages over about 0.5 MB
(a 640x480 rgb8 image is 0.9 MB) mostly do not arrive best-effort
(docs/results/crossprocess-rate.json: 2-3 of 10 VGA pairs; 10 of 10 with
``FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA`` in both processes; 0 of 10 when only the subscriber
has it). The node therefore gets ``LARGE_DATA`` when the environment sets nothing (argument
``fastdds_builtin_transports``); export the same for the camera driver. For a graph on this
machine only use ``SHM?sockets_size=16MB`` on both sides, not
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (rmw_fastrtps then ignores the variable).
"""

import os

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

ARGUMENTS = [
    ("namespace", "", "namespace of the node and its relative topics"),
    ("params_file", PathJoinSubstitution([FindPackageShare("dtp_stereo"), "config",
                                          "params.yaml"]),
     "YAML file with dtp_stereo_node ros__parameters"),
    ("backend", "", "override: auto | torch | onnxruntime | tensorrt (empty = params_file)"),
    ("checkpoint", "", "override: checkpoint path (empty = params_file / shipped model)"),
    ("engine_cache_dir", "", "override: TensorRT engine cache folder (empty = params_file)"),
    ("onnx_path", "", "override: exported ONNX file (empty = params_file / export on demand)"),
    ("device", "", "override: cpu | cuda (empty = params_file)"),
    ("head", "", "override: checkpoint | full | fast DTPnet head (empty = params_file)"),
    ("fp16", "", "override: true | false, half precision on CUDA (empty = params_file)"),
    ("use_sim_time", "false", "use /clock (bag replay with --clock)"),
    ("left_image", "left/image_rect", "left rectified image topic"),
    ("right_image", "right/image_rect", "right rectified image topic"),
    ("left_info", "left/camera_info", "left camera_info topic"),
    ("right_info", "right/camera_info", "right camera_info topic"),
    ("fastdds_builtin_transports", "LARGE_DATA",
     "FASTDDS_BUILTIN_TRANSPORTS of the node when the environment has none (set the same for "
     "the camera driver); empty = Fast DDS default"),
]
OVERRIDES = ("backend", "checkpoint", "engine_cache_dir", "onnx_path", "device", "head")


def _node(context):
    def arg(name):
        return LaunchConfiguration(name).perform(context)

    overrides = {name: arg(name) for name in OVERRIDES if arg(name)}
    if arg("fp16"):
        overrides["fp16"] = arg("fp16").lower() in ("true", "1", "yes")
    overrides["use_sim_time"] = arg("use_sim_time").lower() in ("true", "1", "yes")
    env = {}
    if arg("fastdds_builtin_transports") and "FASTDDS_BUILTIN_TRANSPORTS" not in os.environ:
        env["FASTDDS_BUILTIN_TRANSPORTS"] = arg("fastdds_builtin_transports")
    return [Node(
        package="dtp_stereo",
        executable="stereo_node",
        name="dtp_stereo_node",
        namespace=arg("namespace"),
        parameters=[arg("params_file"), overrides],
        remappings=[
            ("left/image_rect", arg("left_image")),
            ("right/image_rect", arg("right_image")),
            ("left/camera_info", arg("left_info")),
            ("right/camera_info", arg("right_info")),
        ],
        output="screen",
        emulate_tty=True,
        additional_env=env,
    )]


def generate_launch_description():
    """Declare the arguments, then build the node once they are resolved."""
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, default, text in ARGUMENTS]
    return LaunchDescription(declared + [OpaqueFunction(function=_node)])
