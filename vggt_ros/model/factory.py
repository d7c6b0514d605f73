"""Build the inference engine a validated parameter set describes.

Why in model/ and not in the node: the node, the bag replay and the benchmarks all build their VGGT
engine from the same parameters, and none of them should need rclpy (or the node's module) for it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

# The tiny network used with model_config 'small' (same layout as the golden test fixtures' "small").
SMALL_MODEL_CONFIG: dict[str, Any] = {
    "img_size": 518, "patch_size": 14, "embed_dim": 64, "dino_depth": 2, "dino_num_heads": 2, "depth": 6,
    "num_heads": 4, "mlp_ratio": 4.0, "num_register_tokens": 2, "rope_freq": 100,
    "intermediate_layer_idx": [1, 2, 4, 5], "dpt_features": 32, "dpt_out_channels": [24, 32, 48, 64],
    "camera_trunk_depth": 2, "camera_num_heads": 4, "track_features": 32, "track_iters": 2,
    "track_corr_levels": 4, "track_corr_radius": 3, "track_hidden_size": 64, "track_depth": 2,
    "track_num_heads": 4, "track_num_virtual_tracks": 8,
}

_COMPILE_MODES = {"none": False, "blocks": "blocks", "full": True}


def device_name(setting: str) -> str:
    """The ``device`` parameter as a torch device string: 'auto' -> 'cuda' when torch sees a GPU,
    else 'cpu' (:func:`vggt_ros.model.engine.resolve_device`); other values unchanged."""
    if setting != "auto":
        return setting
    from vggt_ros.model.engine import resolve_device

    return str(resolve_device(None))


def build_engine(params: Mapping[str, Any], *, seed: int = 0) -> Any:
    """Build the VGGT inference engine described by the parameters (validated here).

    predictor 'vggt': the network of ``model_config`` with the ``checkpoint`` weights (random seeded
    weights for 'small' with an empty checkpoint), on ``device``/``dtype``, preprocessing from the
    pipeline parameters. predictor 'oracle' raises ``ValueError``: the oracle answers from ground
    truth, which only the caller has (construct :class:`vggt_ros.core.oracle.OraclePredictor` and pass
    it to the node / replay). The checkpoint is resolved first (:func:`vggt_ros.model.checkpoint.
    resolve_checkpoint`): without the weights and without a way to fetch them it raises
    :class:`~vggt_ros.model.checkpoint.CheckpointUnavailable` within seconds.
    """
    from vggt_ros.params.validation import validate_params

    params = validate_params(params, allow_unknown=True)
    if params["predictor"] == "oracle":
        raise ValueError("predictor 'oracle' needs ground truth: construct "
                         "vggt_ros.core.oracle.OraclePredictor (e.g. from a bag's GT or a synthetic "
                         "sequence) and pass it in; build_engine only builds the VGGT engine")
    checkpoint = params["checkpoint"].strip()
    weights = None
    if checkpoint:
        from vggt_ros.model.checkpoint import resolve_checkpoint

        # First, before anything is built: a missing file, or a repo id neither cached nor downloadable
        # (offline, Hub unreachable), fails within seconds (CheckpointUnavailable, a RuntimeError).
        weights = resolve_checkpoint(checkpoint)
    from vggt_ros.model import VGGT, VGGTConfig
    from vggt_ros.model.engine import InferenceEngine

    config = VGGTConfig(**SMALL_MODEL_CONFIG) if params["model_config"] == "small" else VGGTConfig()
    if weights is not None:
        from vggt_ros.model.checkpoint import load_checkpoint

        logger.info("loading VGGT weights from %s (%s)", weights, checkpoint)
        model = load_checkpoint(weights, config=config, licence_source=checkpoint)
    else:
        from vggt_ros.model.synthetic_weights import SEED_SMALL, fill_state_dict

        logger.warning("model_config 'small' without checkpoint: synthetic weights (seed %d), outputs are "
                       "meaningless except for testing the plumbing", SEED_SMALL + seed)
        model = VGGT(config)
        fill_state_dict(model, SEED_SMALL + seed)
    # The point head only runs when the clouds come from it (faster, less memory otherwise).
    return InferenceEngine(model, device=device_name(params["device"]), dtype=params["dtype"],
                           world_points=params["points_source"] == "point_head",
                           preprocess_mode=params["preprocess_mode"], target_size=params["target_size"],
                           dpt_autocast=params["dpt_autocast"], compile=_COMPILE_MODES[params["compile"]])
