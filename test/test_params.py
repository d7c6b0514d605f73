"""The parameter table, its YAML, the model factory and the ROS-free node helpers (no rclpy needed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from vggt_ros.core.config import PipelineConfig
from vggt_ros.model import factory
from vggt_ros.params import table as T
from vggt_ros.params import yaml_file as Y
from vggt_ros.params.validation import pipeline_config_from_params, validate_params

YAML = Path(__file__).resolve().parents[1] / "config" / "vggt.yaml"


def test_yaml_documents_exactly_the_table_with_its_defaults():
    doc = yaml.safe_load(YAML.read_text())
    section = doc["/**"]["ros__parameters"]
    assert list(section) == [p.name for p in T.PARAMS]  # same names, table order
    assert validate_params(section) == T.defaults()
    text = YAML.read_text()
    for p in T.PARAMS:  # every parameter has a comment line right above it
        lines = text.splitlines()
        i = next(k for k, line in enumerate(lines) if line.strip().startswith(f"{p.name}:"))
        assert lines[i - 1].strip().startswith("#")
    assert text == Y.params_yaml_text()  # regenerate: python3 -m vggt_ros.params.yaml_file


def test_pipeline_parameters_map_one_to_one_onto_pipeline_config():
    fields = [f.name for f in dataclasses.fields(PipelineConfig) if f.name != "extra"]
    table = [p.name for p in T.PARAMS if p.group == "pipeline"]
    assert table == fields
    for p in T.PARAMS:
        assert p.description and "see vggt_ros/core/config.py" not in p.description, p.name
    cfg = pipeline_config_from_params(T.defaults())
    assert cfg == PipelineConfig()
    cfg = pipeline_config_from_params(validate_params(
        {"window_size": 10, "stride": 5, "scale_source": "depth",
         "base_T_camera": np.eye(4).reshape(-1).tolist()}))
    assert (cfg.window_size, cfg.stride, cfg.scale_source) == (10, 5, "depth")
    np.testing.assert_array_equal(cfg.base_T_camera, np.eye(4))


@pytest.mark.parametrize("bad, name", [
    ({"device": "gpu"}, "device"), ({"device": "cuda:x"}, "device"), ({"dtype": "half"}, "dtype"),
    ({"predictor": "dino"}, "predictor"), ({"model_config": "large"}, "model_config"),
    ({"window_size": 1}, "window_size"), ({"window_size": 2.5}, "window_size"),
    ({"stride": 8}, "stride"), ({"map_publish_period_s": 0.0}, "map_publish_period_s"),
    ({"qos_depth": 0}, "qos_depth"), ({"publish_tf": "yes"}, "publish_tf"),
    ({"fixed_scale": -1.0}, "fixed_scale"),
    ({"image_transport": "theora"}, "image_transport"), ({"scale_source": "imu"}, "scale_source"),
    ({"checkpoint": ""}, "checkpoint"), ({"odom_frame": "odom", "base_frame": ""}, "odom_frame"),
    ({"publish_map_to_odom": True, "odom_frame": "", "base_frame": ""}, "publish_map_to_odom"),
    ({"base_T_camera": [1.0, 2.0]}, "base_T_camera"),
    ({"conf_percentile": 100.0}, "conf_percentile"), ({"no_such_param": 1}, "no_such_param"),
])
def test_invalid_values_name_the_parameter(bad, name):
    with pytest.raises(ValueError, match=name):
        validate_params(bad)


def test_valid_edge_values_and_coercions():
    v = validate_params({"device": "cuda:1", "fixed_scale": 2, "checkpoint": "", "predictor": "oracle",
                         "odom_frame": "odom", "base_frame": "base_link", "use_sim_time": True})
    assert v["device"] == "cuda:1" and v["fixed_scale"] == 2.0 and isinstance(v["fixed_scale"], float)
    assert "use_sim_time" not in v
    assert validate_params({"checkpoint": "", "model_config": "small"})["checkpoint"] == ""


def test_load_params_yaml_merges_wildcard_and_node_sections(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    window_size: 12\n    stride: 2\n"
                 "/robot/vggt_node:\n  ros__parameters:\n    stride: 6\n    map_frame: world\n"
                 "other_node:\n  ros__parameters:\n    stride: 3\n")
    d = Y.load_params_yaml(f, node_fqn="/robot/vggt_node")
    assert d == {"window_size": 12, "stride": 6, "map_frame": "world"}
    assert pipeline_config_from_params(validate_params(d)).stride == 6
    assert Y.load_params_yaml(f, node_name="camera_driver") == {"window_size": 12, "stride": 2}
    f.write_text("other_node:\n  ros__parameters:\n    stride: 3\n")
    with pytest.raises(ValueError, match="no parameters for node"):
        Y.load_params_yaml(f)
    f.write_text("vggt_node:\n  window_size: 3\n")
    with pytest.raises(ValueError, match="ros__parameters"):
        Y.load_params_yaml(f)


def test_build_engine_refuses_the_oracle_with_a_reason():
    with pytest.raises(ValueError, match="ground truth"):
        factory.build_engine({"predictor": "oracle", "checkpoint": ""})


@pytest.mark.parametrize("source", ["depth", "point_head"])
def test_build_engine_runs_the_point_head_only_when_clouds_come_from_it(source):
    engine = factory.build_engine({"predictor": "vggt", "model_config": "small", "checkpoint": "",
                               "device": "cpu", "points_source": source})
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    pred = engine.predict([image, image], frame_keys=[1, 2])
    assert (pred.world_points is not None) == (source == "point_head")
    assert np.all(np.isfinite(pred.intrinsics)) and np.all(pred.intrinsics[:, 0, 0] > 0)


def test_build_engine_passes_the_speed_options(monkeypatch):
    import vggt_ros.model.engine as engine_mod

    compiled = []
    monkeypatch.setattr(engine_mod, "compile_blocks", lambda m, backend="inductor": compiled.append(m) or 0)
    base = {"predictor": "vggt", "model_config": "small", "checkpoint": "", "device": "cpu"}
    plain = factory.build_engine(base)
    assert plain.dpt_autocast is False and compiled == []
    fast = factory.build_engine({**base, "dpt_autocast": True, "compile": "blocks"})
    assert fast.dpt_autocast is True and compiled == [fast.model]


# ---------------------------------------------------------------------------------------------- one table
def test_committed_yaml_is_the_generated_one_and_applies_in_any_namespace(tmp_path):
    assert Y.main(["--check", "--path", str(YAML)]) == 0  # else: python3 -m vggt_ros.params.yaml_file
    stale = tmp_path / "vggt.yaml"
    stale.write_text(YAML.read_text().replace("window_size: 8", "window_size: 9"))
    assert Y.main(["--check", "--path", str(stale)]) == 1
    Y.write_default_yaml(stale)
    assert stale.read_text() == YAML.read_text()
    # A bare "vggt_node:" key never reached the launched /vggt/vggt_node; "/**" reaches any namespace.
    assert list(yaml.safe_load(YAML.read_text())) == ["/**"]
    assert Y.load_params_yaml(YAML) == Y.load_params_yaml(YAML, node_fqn="/other/vggt_node")


def test_load_params_yaml_matches_node_keys_as_rcl_does(tmp_path):
    f = tmp_path / "p.yaml"

    def load(text: str, fqn: str) -> dict:
        f.write_text(text)
        return Y.load_params_yaml(f, node_fqn=fqn)

    wildcard = "/**:\n  ros__parameters:\n    stride: 2\n"
    assert load(wildcard, "/vggt/vggt_node") == {"stride": 2}
    assert load(wildcard, "/other/vggt_node") == {"stride": 2}
    assert load('"**":\n  ros__parameters:\n    stride: 2\n', "/a/b/vggt_node") == {"stride": 2}
    bare = "vggt_node:\n  ros__parameters:\n    stride: 3\n"
    with pytest.raises(ValueError, match="no parameters for node '/vggt/vggt_node'"):
        load(bare, "/vggt/vggt_node")  # rcl reads a bare key as /vggt_node
    assert load(bare, "/vggt_node") == {"stride": 3}
    exact = "/vggt/vggt_node:\n  ros__parameters:\n    stride: 5\n"
    assert load(exact, "/vggt/vggt_node") == {"stride": 5}
    with pytest.raises(ValueError, match="no parameters"):
        load(exact, "/other/vggt_node")
    any_ns = "/**/vggt_node:\n  ros__parameters:\n    stride: 6\n"
    assert load(any_ns, "/vggt/vggt_node") == load(any_ns, "/vggt_node") == {"stride": 6}
    with pytest.raises(ValueError, match="no parameters"):
        load(any_ns, "/vggt/camera")
    assert load("/*/vggt_node:\n  ros__parameters:\n    stride: 7\n", "/vggt/vggt_node") == {"stride": 7}
    nested = "vggt:\n  vggt_node:\n    ros__parameters:\n      stride: 4\n"  # namespace as a parent key
    assert load(nested, "/vggt/vggt_node") == {"stride": 4}
    # Every matching section applies, in file order (later ones override).
    both = exact + wildcard
    assert load(both, "/vggt/vggt_node") == {"stride": 2}
    assert Y.load_params_yaml(f) == {"stride": 2}  # default: /vggt/vggt_node, as launched
    assert Y.node_key_matches("/**", "/vggt/vggt_node")
    assert not Y.node_key_matches("vggt_node", "/vggt/vggt_node")


def test_pipeline_config_defaults_are_the_tables():
    cfg = PipelineConfig()
    for name in T.PIPELINE_PARAM_NAMES:
        default = T.PARAMS_BY_NAME[name].default
        value = getattr(cfg, name)
        if name == "base_T_camera":
            assert default == [] and value is None
        else:
            assert value == default and type(value) is type(default), name
    fields = [f.name for f in dataclasses.fields(PipelineConfig) if f.name != "extra"]
    assert fields == list(T.PIPELINE_PARAM_NAMES)


def test_pipeline_config_checks_values_by_the_table():
    with pytest.raises(ValueError, match="target_size.*multiple of 14"):
        PipelineConfig(target_size=500)
    with pytest.raises(ValueError, match="window_size.*out of range"):
        PipelineConfig(window_size=300, stride=4)
    stride = PipelineConfig(stride=np.int64(3)).stride
    assert stride == 3 and type(stride) is int


def test_the_pipeline_builds_its_parts_with_the_tables_values():
    from vggt_ros.core.pipeline import StreamingPipeline

    pipe = StreamingPipeline(PipelineConfig())
    sel, d = pipe._selector, T.default_of
    assert (sel.min_parallax_px, sel.min_rotation_deg, sel.min_translation) == (
        d("min_parallax_px"), d("min_rotation_deg"), d("min_translation"))
    assert (sel.min_gap, sel.max_gap, sel.flow_width) == (
        d("min_keyframe_gap"), d("max_keyframe_gap"), d("flow_width"))
    assert pipe._scale.min_motion == d("scale_min_motion") and pipe._map.max_points == d("map_max_points")
    pipe = StreamingPipeline(PipelineConfig(min_parallax_px=12.0, min_rotation_deg=3.0))
    assert (pipe._selector.min_parallax_px, pipe._selector.min_rotation_deg) == (12.0, 3.0)


def test_device_name_resolves_auto_only():
    import torch

    assert factory.device_name("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert factory.device_name("cuda:1") == "cuda:1" and factory.device_name("cpu") == "cpu"
