"""The launch file, config/params.yaml, node parameter table and setup.py agree (no ROS needed)."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
NODE = ROOT / "dtp_stereo" / "node.py"
LAUNCH = ROOT / "launch" / "stereo.launch.py"
PARAMS = ROOT / "config" / "params.yaml"
SETUP = ROOT / "setup.py"


def _parameter_table():
    """(name, default, read_only) of each ParamSpec in node.py's PARAMETERS, read with ast."""
    tree = ast.parse(NODE.read_text())
    for node in ast.walk(tree):
        target = getattr(node, "target", None) or (getattr(node, "targets", None) or [None])[0]
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and getattr(target, "id", "") == \
                "PARAMETERS":
            rows = []
            for call in node.value.elts:
                kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
                rows.append((ast.literal_eval(call.args[0]), ast.literal_eval(call.args[1]),
                             kwargs.get("read_only", True)))
            return rows
    raise AssertionError("PARAMETERS table not found in dtp_stereo/node.py")


def _console_scripts():
    tree = ast.parse(SETUP.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            return ast.literal_eval(node.value)["console_scripts"]
    raise AssertionError("setup.py has no entry_points")


def test_params_yaml_has_every_declared_parameter_with_its_default():
    data = yaml.safe_load(PARAMS.read_text())
    params = data["/**"]["ros__parameters"]
    table = _parameter_table()
    assert set(params) == {name for name, _, _ in table}
    for name, default, _ in table:
        assert type(params[name]) is type(default), name
        assert params[name] == default, name


def test_live_parameters_are_the_documented_ones():
    live = {name for name, _, read_only in _parameter_table() if not read_only}
    assert live == {"max_depth", "use_color", "publish_depth", "publish_confidence",
                    "latency_budget_ms", "min_disparity", "confidence_threshold",
                    "keep_left_band"}
    readme = (ROOT / "README.md").read_text()
    for name in live:  # the README names every live parameter
        assert f"`{name}`" in readme, name


def test_parameter_table_matches_imported_module():
    pytest.importorskip("rclpy")
    from dtp_stereo.node import PARAMETERS

    assert [(p.name, p.default, p.read_only) for p in PARAMETERS] == _parameter_table()


def test_launch_file_names_the_console_script_and_arguments():
    tree = ast.parse(LAUNCH.read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)
             and getattr(n.func, "id", "") == "Node"]
    assert len(calls) == 1
    kwargs = {k.arg: k.value for k in calls[0].keywords}
    assert ast.literal_eval(kwargs["package"]) == "dtp_stereo"
    executable = ast.literal_eval(kwargs["executable"])
    assert ast.literal_eval(kwargs["name"]) == "dtp_stereo_node"
    scripts = {s.split("=")[0].strip(): s.split("=")[1].strip() for s in _console_scripts()}
    assert scripts.get(executable) == "dtp_stereo.node:main"
    arguments = next(n for n in ast.walk(tree) if isinstance(n, ast.Assign)
                     and getattr(n.targets[0], "id", "") == "ARGUMENTS")
    names = {ast.literal_eval(t.elts[0]) for t in arguments.value.elts}
    assert {"namespace", "params_file", "backend", "checkpoint", "engine_cache_dir",
            "use_sim_time", "left_image", "right_image", "left_info", "right_info"} <= names
    remaps = [ast.literal_eval(t.elts[0]) for t in kwargs["remappings"].elts]
    assert remaps == ["left/image_rect", "right/image_rect", "left/camera_info",
                      "right/camera_info"]


def test_launch_file_builds_when_launch_ros_is_installed():
    pytest.importorskip("launch_ros")
    import importlib.util

    spec = importlib.util.spec_from_file_location("stereo_launch", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert len(description.entities) == len(module.ARGUMENTS) + 1


def _launch_module_with_stand_ins(monkeypatch):
    """The launch file imported against stand-ins of launch / launch_ros (not on PyPI):
    LaunchConfiguration(name).perform(context) reads context[name]; Node records its kwargs."""
    import importlib.util
    import sys
    import types

    class LaunchConfiguration:
        def __init__(self, name, *args, **kwargs):
            self.name = name

        def perform(self, context):
            return context[self.name]

    class Recorder:
        def __init__(self, *args, **kwargs):
            self.args, self.kwargs = args, kwargs

    modules = {
        "launch": {"LaunchDescription": Recorder},
        "launch.actions": {"DeclareLaunchArgument": Recorder, "OpaqueFunction": Recorder},
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration,
                                 "PathJoinSubstitution": Recorder},
        "launch_ros": {}, "launch_ros.actions": {"Node": Recorder},
        "launch_ros.substitutions": {"FindPackageShare": Recorder},
    }
    for name, attrs in modules.items():
        monkeypatch.setitem(sys.modules, name, types.SimpleNamespace(**attrs))
    spec = importlib.util.spec_from_file_location("stereo_launch_stub", LAUNCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_gives_the_node_large_data_unless_the_environment_chose(monkeypatch):
    module = _launch_module_with_stand_ins(monkeypatch)
    context = {name: default for name, default, _ in module.ARGUMENTS}
    context.update(namespace="stereo", params_file="params.yaml")
    monkeypatch.delenv("FASTDDS_BUILTIN_TRANSPORTS", raising=False)
    (node,) = module._node(context)
    assert node.kwargs["additional_env"] == {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    assert node.kwargs["namespace"] == "stereo"
    monkeypatch.setenv("FASTDDS_BUILTIN_TRANSPORTS", "SHM?sockets_size=16MB")
    (node,) = module._node(context)
    assert node.kwargs["additional_env"] == {}  # the user's choice is inherited, not replaced
    context["fastdds_builtin_transports"] = ""
    monkeypatch.delenv("FASTDDS_BUILTIN_TRANSPORTS")
    (node,) = module._node(context)
    assert node.kwargs["additional_env"] == {}  # empty argument: Fast DDS defaults
