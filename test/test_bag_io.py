"""Bag reading (ROS 1 bz2 .bag, ROS 2 .mcap/.db3 directory and single file) and ground-truth logic."""

from __future__ import annotations

import numpy as np
import pytest
from bag_fixtures import NUM_FRAMES, bags  # noqa: F401 - fixture
from scipy.spatial.transform import Rotation

from vggt_ros.bag.errors import ReplayError
from vggt_ros.bag.groundtruth import GroundTruth, compose_tf_path, load_tum_groundtruth, parse_gt_topic_spec
from vggt_ros.bag.reader import BagSource
from vggt_ros.sim.bags import write_sequence_bag
from vggt_ros.sim.sequences import make_sequence


@pytest.mark.parametrize("fmt", ["ros1", "mcap", "db3", "mcap_file"])
def test_synthetic_bag_reads_back_exactly(bags, fmt):  # noqa: F811
    seq = bags.seq
    with BagSource(bags.path(fmt)) as src:
        assert src.image_topic == "/camera/rgb/image_color"
        assert src.camera_info_topic == "/camera/rgb/camera_info"
        assert src.depth_topic == "/camera/depth/image"
        assert src.num_images == NUM_FRAMES
        frames = list(src.frames())
        gt = src.read_gt_topic("/tf:world.kinect")
    assert [f.stamp_ns for f in frames] == [int(s) for s in seq.stamps_ns]
    for i in (0, 13, NUM_FRAMES - 1):
        rgb, depth = seq.render_frame(i)
        np.testing.assert_array_equal(frames[i].image, rgb)  # bgr8 in the ROS 1 bag, decoded to RGB
        np.testing.assert_array_equal(frames[i].depth, depth)
        np.testing.assert_array_equal(frames[i].intrinsics, seq.K)
    assert frames[0].frame_id.endswith("rgb_optical_frame") and not frames[0].frame_id.startswith("/")
    np.testing.assert_array_equal(gt.stamps_ns, seq.stamps_ns)
    np.testing.assert_allclose(gt.poses, seq.world_T_camera, atol=1e-12)


def test_ros1_tf_with_leading_slashes_and_inverse_path(bags):  # noqa: F811
    with BagSource(bags.ros1) as src:
        fwd = src.read_gt_topic("/tf:/world./kinect")
        inv = src.read_gt_topic("/tf:kinect.world")
        with pytest.raises(ReplayError, match="no transform between frames 'world' and 'base'.*world.kinect"):
            src.read_gt_topic("/tf:world.base")
        with pytest.raises(ReplayError, match="frame path"):
            src.read_gt_topic("/tf")
    np.testing.assert_allclose(fwd.poses @ inv.poses, np.tile(np.eye(4), (NUM_FRAMES, 1, 1)), atol=1e-12)


def test_16uc1_depth_and_max_frames(tmp_path):
    seq = make_sequence("orbit", 4, 60, 80)
    path = write_sequence_bag(seq, tmp_path / "mm.bag", "ros1", depth_encoding="16UC1")
    with BagSource(path) as src:
        frames = list(src.frames(max_frames=3))
    assert len(frames) == 3
    np.testing.assert_allclose(frames[2].depth, seq.render_frame(2)[1], atol=0.5e-3 + 1e-6)


def test_tum_groundtruth_and_interpolation(bags):  # noqa: F811
    gt = load_tum_groundtruth(bags.gt)
    seq = bags.seq
    np.testing.assert_array_equal(gt.stamps_ns, seq.stamps_ns)
    np.testing.assert_allclose(gt.poses, seq.world_T_camera, atol=1e-8)
    # midway between two samples: translation halfway, rotation the slerp midpoint
    mid = (seq.stamps_ns[4] + seq.stamps_ns[5]) // 2
    poses, ok = gt.interpolate([mid, seq.stamps_ns[-1] + 10**9])
    assert ok.tolist() == [True, False]
    np.testing.assert_allclose(poses[0, :3, 3], (gt.poses[4, :3, 3] + gt.poses[5, :3, 3]) / 2, atol=1e-9)
    r = Rotation.from_matrix(gt.poses[4, :3, :3]).inv() * Rotation.from_matrix(poses[0, :3, :3])
    r_full = Rotation.from_matrix(gt.poses[4, :3, :3]).inv() * Rotation.from_matrix(gt.poses[5, :3, :3])
    assert abs(r.magnitude() - r_full.magnitude() / 2) < 1e-9


def test_compose_tf_path_chain_with_static_edge():
    moving = [(i * 10, np.eye(4)) for i in range(5)]
    for i, (_, T) in enumerate(moving):
        T[0, 3] = float(i)
    static = np.eye(4)
    static[:3, :3] = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    static[2, 3] = 0.5
    # stored child->parent for the static edge: the path must invert it
    gt = compose_tf_path(
        {("world", "body"): moving, ("cam", "body"): [(0, np.linalg.inv(static))]}, ["world", "body", "cam"]
    )
    assert len(gt) == 5
    np.testing.assert_allclose(gt.poses[3], moving[3][1] @ static, atol=1e-12)


def test_gt_spec_parsing():
    assert parse_gt_topic_spec("/tf:world.kinect") == ("/tf", ["world", "kinect"])
    assert parse_gt_topic_spec("/tf:/map>base.link") == ("/tf", ["map", "base.link"])
    assert parse_gt_topic_spec("/odom") == ("/odom", [])
    with pytest.raises(ReplayError):
        parse_gt_topic_spec("/tf:world")
    with pytest.raises(ReplayError, match="shape"):
        GroundTruth(np.zeros(2, np.int64), np.zeros((3, 4, 4)))
