"""Advice on the DDS transport for camera-sized images between processes (ROS-free).

Measured (``docs/results/crossprocess-rate.json``, 640×480 rgb8 pairs best-effort from another
process, rmw_fastrtps): Fast DDS defaults deliver 2-3 of 10; ``FASTDDS_BUILTIN_TRANSPORTS=
LARGE_DATA`` on both sides 10 of 10; ``SHM?sockets_size=16MB`` on both sides 10 of 10 (shared
memory only, so the graph stays on the machine). ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``
undoes either: rmw_fastrtps then turns Fast DDS's builtin transports off and adds its own
shared-memory and UDP transports with default sizes (a 512 KiB segment, less than one VGA image),
so ``FASTDDS_BUILTIN_TRANSPORTS`` is ignored (1-3 of 10 with LARGE_DATA, 2-4 without).
"""

from typing import Mapping, Optional, Tuple

__all__ = ["LOCAL_ONLY_TRANSPORT", "transport_advice"]

LOCAL_ONLY_TRANSPORT = "SHM?sockets_size=16MB"  # shared memory only, segments for VGA images

_PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def transport_advice(env: Mapping[str, str], rmw: str) -> Optional[Tuple[str, str]]:
    """``(level, message)`` about ``env``'s DDS settings for large images, or None when they
    are fine or not ours to judge (another RMW, or an XML profile the user wrote).

    Args:
        env: the process environment (``os.environ``).
        rmw: the RMW implementation identifier (``rclpy.get_rmw_implementation_identifier()``).
    Returns:
        level ``"warn"`` for settings measured to lose VGA images, ``"info"`` for Fast DDS
        defaults (large images from other processes mostly lost).
    """
    if "fastrtps" not in rmw and "fastdds" not in rmw:
        return None
    if any(env.get(k) for k in _PROFILE_VARIABLES):
        return None
    builtin = env.get("FASTDDS_BUILTIN_TRANSPORTS", "")
    if env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").upper() == "LOCALHOST":
        ignored = f" (FASTDDS_BUILTIN_TRANSPORTS={builtin} is ignored then)" if builtin else ""
        return ("warn", "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST: rmw_fastrtps replaces Fast "
                f"DDS's builtin transports by default-sized ones{ignored}, and images over "
                "~0.5 MB from other processes mostly do not arrive best-effort; to keep the "
                "graph on this machine, unset it and export FASTDDS_BUILTIN_TRANSPORTS="
                f"'{LOCAL_ONLY_TRANSPORT}' for the camera driver and this node")
    if not builtin:
        return ("info", "Fast DDS with default transports: images over ~0.5 MB from other "
                "processes mostly do not arrive best-effort; export FASTDDS_BUILTIN_TRANSPORTS="
                "LARGE_DATA (or "
                f"'{LOCAL_ONLY_TRANSPORT}' for a graph on this machine only) for the camera "
                "driver and this node (the launch file does it for the node)")
    return None
