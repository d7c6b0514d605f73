"""VGGT network, preprocessing, checkpoint loading and the inference engine."""

from vggt_ros.model.checkpoint import (
    CheckpointError,
    CheckpointMismatchError,
    CheckpointUnavailable,
    load_checkpoint,
    read_state_dict,
    resolve_checkpoint,
)
from vggt_ros.model.config import VGGTConfig
from vggt_ros.model.engine import InferenceEngine, InferenceOutOfMemory
from vggt_ros.model.geometry import (
    closed_form_inverse_se3,
    depth_to_camera_points,
    depth_to_world_points,
    extri_intri_to_pose_encoding,
    pose_encoding_to_extri_intri,
    project_points,
)
from vggt_ros.model.preprocessing import preprocess_images, preprocess_images_uint8, preprocess_info_for
from vggt_ros.model.vggt import VGGT

__all__ = [
    "VGGT",
    "VGGTConfig",
    "CheckpointError",
    "CheckpointMismatchError",
    "CheckpointUnavailable",
    "resolve_checkpoint",
    "InferenceEngine",
    "InferenceOutOfMemory",
    "closed_form_inverse_se3",
    "depth_to_camera_points",
    "depth_to_world_points",
    "extri_intri_to_pose_encoding",
    "load_checkpoint",
    "pose_encoding_to_extri_intri",
    "preprocess_images",
    "preprocess_images_uint8",
    "preprocess_info_for",
    "project_points",
    "read_state_dict",
]
