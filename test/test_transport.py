"""DDS transport advice for camera-sized images between processes (issue 12; ROS-free)."""

from dtp_stereo.ros.transport import LOCAL_ONLY_TRANSPORT, transport_advice

FAST = "rmw_fastrtps_cpp"


def test_localhost_discovery_is_warned_about_even_with_large_data():
    level, text = transport_advice({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                                    "FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}, FAST)
    assert level == "warn" and "LARGE_DATA is ignored" in text and LOCAL_ONLY_TRANSPORT in text
    level, text = transport_advice({"ROS_AUTOMATIC_DISCOVERY_RANGE": "localhost"}, FAST)
    assert level == "warn" and "ignored" not in text


def test_defaults_get_a_hint_and_good_settings_none():
    level, text = transport_advice({}, FAST)
    assert level == "info" and "LARGE_DATA" in text and LOCAL_ONLY_TRANSPORT in text
    for env in ({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
                {"FASTDDS_BUILTIN_TRANSPORTS": LOCAL_ONLY_TRANSPORT},
                {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA",
                 "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"},
                {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/profile.xml",
                 "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}):  # the user's own XML: theirs
        assert transport_advice(env, FAST) is None, env
    assert transport_advice({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"},
                            "rmw_cyclonedds_cpp") is None
