"""Validation of a whole parameter set against the table, and its PipelineConfig.

Why here: the node, the replay and the model factory must accept and refuse exactly the same
parameter sets, so each value is coerced by its table entry (:meth:`ParamSpec.coerce`), the node's
cross-parameter rules are stated below, and the streaming core's cross-field rules are those of
:class:`~vggt_ros.core.config.PipelineConfig` (run by :func:`pipeline_config_from_params`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vggt_ros.core.config import PipelineConfig
from vggt_ros.params.table import PARAMS_BY_NAME, PIPELINE_PARAM_NAMES, ROS_RESERVED_PARAMS, defaults


def validate_params(params: Mapping[str, Any], *, allow_unknown: bool = False) -> dict[str, Any]:
    """Fill defaults, check every value and the cross-parameter rules; return a clean flat dict.

    Raises ``ValueError`` naming the parameter and its allowed values for anything invalid, including
    unknown names (a typo would otherwise silently keep a default) unless ``allow_unknown``.
    """
    unknown = sorted(k for k in set(params) - set(PARAMS_BY_NAME)
                     if k not in ROS_RESERVED_PARAMS and not k.startswith("qos_overrides."))
    if unknown and not allow_unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; known parameters are listed in config/vggt.yaml")
    out = defaults()
    for name, value in params.items():
        if name in PARAMS_BY_NAME:
            out[name] = PARAMS_BY_NAME[name].coerce(value)
    # The node's cross-parameter rules.
    if not out["checkpoint"].strip() and out["predictor"] == "vggt" and out["model_config"] != "small":
        raise ValueError("parameter 'checkpoint' is empty: set a Hugging Face repo id or a weights file "
                         "(empty is only allowed with predictor 'oracle' or model_config 'small')")
    if bool(out["odom_frame"]) != bool(out["base_frame"]):
        raise ValueError("parameters 'odom_frame' and 'base_frame' must be set together (both empty: "
                         f"publish map -> camera); got odom_frame={out['odom_frame']!r}, "
                         f"base_frame={out['base_frame']!r}")
    if out["publish_map_to_odom"] and not out["odom_frame"]:
        raise ValueError("parameter 'publish_map_to_odom' needs 'odom_frame' and 'base_frame'")
    if out["odom_frame"] and out["odom_frame"] == out["map_frame"]:
        raise ValueError(f"parameters 'odom_frame' and 'map_frame' must differ (both {out['map_frame']!r})")
    if out["grid_max_z"] <= out["grid_min_z"]:
        raise ValueError(f"parameter 'grid_max_z' ({out['grid_max_z']}) must exceed 'grid_min_z' "
                         f"({out['grid_min_z']})")
    pipeline_config_from_params(out)  # the core's cross-field rules (stride < window_size, ...)
    return out


def pipeline_config_from_params(params: Mapping[str, Any]) -> PipelineConfig:
    """The :class:`PipelineConfig` of a (validated or partial) flat parameter dict.

    Node parameters in ``params`` are ignored; errors are re-raised as ``ValueError`` with context.
    """
    sub = {k: params[k] for k in PIPELINE_PARAM_NAMES if k in params}
    try:
        return PipelineConfig.from_params(sub)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid streaming parameters: {exc}") from exc
