"""The real rclpy node end to end: a test publisher plays a synthetic sequence, a probe node records
every output topic, and the outputs are checked against the sequence's ground truth.

Everything is real rclpy/DDS: the node's TF goes out as tf2_msgs/TFMessage on /tf and its tracks as
the generated vggt_ros/msg/KeypointTracks (both from the colcon install space: run the tests in its
environment, README). Only tf2_ros's Buffer has no wheel: TF lookups get a stand-in
(test/ros_stand_ins.py) through the node's factory argument.
Every wait is bounded.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from predictor_doubles import OomAbove  # noqa: E402
from ros_stand_ins import FunctionTfBuffer  # noqa: E402

from vggt_ros.core.frames import REP103_R_OPTICAL, invert_pose  # noqa: E402
from vggt_ros.core.oracle import OraclePredictor  # noqa: E402
from vggt_ros.core.types import PredictorBase  # noqa: E402
from vggt_ros.messages.builders import to_rclpy  # noqa: E402
from vggt_ros.messages.camera_info import camera_info_fields, camera_info_msg_to_intrinsics  # noqa: E402
from vggt_ros.messages.images import (  # noqa: E402
    depth_image_fields,
    depth_msg_to_array,
    image_msg_to_rgb,
    rgb_image_fields,
)
from vggt_ros.messages.point_clouds import pointcloud2_msg_to_xyz_rgb  # noqa: E402
from vggt_ros.messages.poses import pose_msg_to_matrix, transform_msg_to_matrix  # noqa: E402
from vggt_ros.messages.stamps import header_fields, stamp_ns_of  # noqa: E402
from vggt_ros.messages.tracks import keypoint_tracks_msg_to_output  # noqa: E402
from vggt_ros.sim.sequences import make_sequence  # noqa: E402

H, W = 120, 160
CAM = "cam_optical"
TARGET = 126  # small network input keeps the oracle (and the tiny VGGT) fast


def wait_for(pred: Callable[[], bool], timeout: float, what: str | Callable[[], str]) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what() if callable(what) else what}")




@pytest.fixture(scope="module")
def seq():
    s = make_sequence("orbit", 12, height=H, width=W, fps=10.0)
    _ = s.rgb  # render once
    return s


class Harness:
    """VggtNode + a probe node (publisher of the camera, subscriber of every output) on one executor."""

    TOPICS = {
        "depth/image": "Image", "depth/camera_info": "CameraInfo", "depth/confidence": "Image",
        "depth/rgb": "Image", "points": "PointCloud2", "odometry": "Odometry", "path": "Path",
    }

    def __init__(self, ctx: Any, ns: str, params: dict, predictor: Any = None,
                 tf_transforms: dict | None = None) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import OccupancyGrid, Odometry, Path
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

        from vggt_ros.ros.node import VggtNode

        try:  # the install space's (README: run the tests in its environment)
            from tf2_msgs.msg import TFMessage
            from vggt_ros.msg import KeypointTracks
        except ImportError as exc:
            pytest.fail(f"{exc}: run the tests in the colcon install space's environment (README: source "
                        "install/setup.bash after scripts/colcon_build.sh)", pytrace=False)

        types = {"Image": Image, "CameraInfo": CameraInfo, "PointCloud2": PointCloud2, "Odometry": Odometry,
                 "Path": Path}
        self.ns = ns
        self.tf_buffer = FunctionTfBuffer(tf_transforms or {})
        # keep_all: every frame is processed (the paced tests count exact outputs); the burst test
        # overrides it with keep_newest
        base = dict(skip_policy="keep_all", map_publish_period_s=0.2, diagnostics_period_s=0.2,
                    path_publish_period_s=0.2, grid_publish_period_s=0.2, odom_frame="", base_frame="",
                    target_size=TARGET, log_interval_s=0.5)
        base.update(params)
        self.node = VggtNode(
            params=base, predictor=predictor, context=ctx, namespace=ns,
            tf_buffer_factory=lambda n: self.tf_buffer,
        )
        self.probe = Node("probe", namespace=ns, context=ctx)
        self.lock = threading.Lock()
        self.msgs: dict[str, list] = defaultdict(list)
        reliable = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.subs = []
        for topic, tname in self.TOPICS.items():
            self.subs.append(self.probe.create_subscription(types[tname], topic, self._rec(topic), reliable))
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                             reliability=ReliabilityPolicy.RELIABLE)
        self.subs.append(self.probe.create_subscription(PointCloud2, "map", self._rec("map"), latched))
        self.subs.append(self.probe.create_subscription(OccupancyGrid, "grid", self._rec("grid"), latched))
        self.subs.append(self.probe.create_subscription(DiagnosticArray, "/diagnostics", self._rec("diag"),
                                                        reliable))
        self.subs.append(self.probe.create_subscription(TFMessage, "/tf", self._rec("tf"), reliable))
        self.subs.append(self.probe.create_subscription(KeypointTracks, "tracks", self._rec("tracks"),
                                                        reliable))
        self.image_pub = self.probe.create_publisher(Image, "image", reliable)
        self.compressed_pub = self.probe.create_publisher(CompressedImage, "image/compressed", reliable)
        self.depth_pub = self.probe.create_publisher(Image, "metric_depth", reliable)
        self.info_pub = self.probe.create_publisher(CameraInfo, "camera_info", reliable)
        self.Image, self.CameraInfo, self.CompressedImage = Image, CameraInfo, CompressedImage
        inputs = [self.info_pub, self.compressed_pub if base.get("image_transport") == "compressed"
                  else self.image_pub] + ([self.depth_pub] if base.get("scale_source") == "depth" else [])
        self.executor = MultiThreadedExecutor(num_threads=3, context=ctx)
        self.executor.add_node(self.node)
        self.executor.add_node(self.probe)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        # every output the node publishes must be matched before frames flow (volatile QoS)
        published = {s.topic_name for s in self.subs if s.topic_name.rsplit("/", 1)[-1] != "diagnostics"
                     and self.node.count_publishers(s.topic_name) > 0}
        assert any(t.endswith("depth/image") for t in published)
        wait_for(lambda: all(pub.get_subscription_count() >= 1 for pub in inputs)
                 and all(s.get_publisher_count() >= 1 for s in self.subs if s.topic_name in published),
                 10.0, "discovery")

    def _rec(self, topic: str) -> Callable[[Any], None]:
        def cb(msg: Any) -> None:
            with self.lock:
                self.msgs[topic].append(msg)
        return cb

    def got(self, topic: str) -> list:
        with self.lock:
            return list(self.msgs[topic])

    def tf(self) -> list:
        """Every TransformStamped the node sent on /tf, in order."""
        return [t for m in self.got("tf") for t in m.transforms]

    def send(self, rgb: np.ndarray, stamp_ns: int, K: np.ndarray | None = None, encoding: str = "rgb8",
             wait: bool = True, frame_id: str = CAM) -> None:
        received = self.node.pipeline.counters()["received"] + self.node.stats().get("rejected_messages", 0)
        if K is not None:
            self.info_pub.publish(to_rclpy(self.CameraInfo, camera_info_fields(
                K, rgb.shape[0], rgb.shape[1], stamp_ns, frame_id)))
        fields = rgb_image_fields(rgb, stamp_ns, frame_id) if rgb.size else {
            "header": header_fields(stamp_ns, frame_id), "height": 0, "width": 0, "encoding": "rgb8",
            "step": 0, "data": np.zeros(0, np.uint8)}
        fields["encoding"] = encoding
        self.image_pub.publish(to_rclpy(self.Image, fields))
        if wait:
            wait_for(lambda: self.node.pipeline.counters()["received"]
                     + self.node.stats().get("rejected_messages", 0) > received, 5.0, f"image {stamp_ns}")

    def send_rgbd_compressed(self, rgb: np.ndarray, depth: np.ndarray, stamp_ns: int) -> None:
        """Metric depth (32FC1) then the JPEG colour image of the same stamp."""
        import cv2

        received = self.node.pipeline.counters()["received"]
        self.depth_pub.publish(to_rclpy(self.Image, depth_image_fields(depth, stamp_ns, CAM)))
        ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        self.compressed_pub.publish(to_rclpy(self.CompressedImage, {
            "header": header_fields(stamp_ns, CAM), "format": "jpeg", "data": jpeg.reshape(-1)}))
        wait_for(lambda: self.node.pipeline.counters()["received"] > received, 5.0, f"rgbd {stamp_ns}")

    def play(self, seq: Any, indices: Any, wait: bool = True, period: float = 0.0) -> None:
        for i in indices:
            self.send(seq.rgb[i], int(seq.stamps_ns[i]), seq.K, wait=wait)
            time.sleep(period)

    def state(self) -> str:
        """Counts for failure messages."""
        with self.lock:
            got = {k: len(v) for k, v in self.msgs.items()}
        return f"received {got}; pipeline {self.node.pipeline.counters()}; node {self.node.stats()}"

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.thread.join(5.0)  # the spin thread ends before its nodes go (it would use them)
        self.node.destroy_node()
        self.probe.destroy_node()


def first_window_metres_per_unit(seq: Any, n: int) -> float:
    """World units of the pipeline = the oracle's normalisation of the bootstrap window."""
    o = OraclePredictor(seq, target_size=TARGET)
    o.predict(list(seq.rgb[:n]), None, [int(s) for s in seq.stamps_ns[:n]])
    return 1.0 / o.last_scale


def level(status: Any) -> int:
    """DiagnosticStatus.level (a 1-byte ``bytes`` in rclpy) as an int."""
    lv = status.level
    return lv[0] if isinstance(lv, (bytes, bytearray)) else int(lv)


def rot_err_deg(A: np.ndarray, B: np.ndarray) -> float:
    c = (np.trace(A[:3, :3].T @ B[:3, :3]) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(c, -1, 1))))


# ---------------------------------------------------------------------------------------------------


def test_the_ros_free_layers_import_without_rclpy_and_the_node_is_a_plain_rclpy_class():
    """The node module imports rclpy at its top; the replay, runner and output plan never need it."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['rclpy'] = None\n"  # any import of rclpy now fails
        "import vggt_ros.bag.replay, vggt_ros.runner.stream_runner, vggt_ros.outputs.builder\n"
        "try:\n    import vggt_ros.ros.node\nexcept ImportError:\n    print('node needs rclpy')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "node needs rclpy"
    from rclpy.node import Node

    from vggt_ros.ros.node import VggtNode

    assert issubclass(VggtNode, Node)


class _EngineLikeOracle(OraclePredictor):
    """The oracle plus the engine's cache hooks, to check that the node calls them."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.prefetched: list[int] = []
        self.cache_clears = 0
        self.warmups: list[tuple[Any, ...]] = []
        self.fail_warmup = False

    def prefetch(self, images: Any, frame_keys: Any) -> None:
        assert len(images) == len(frame_keys) == 1
        self.prefetched.extend(int(k) for k in frame_keys)

    def clear_caches(self) -> None:
        self.cache_clears += 1

    def warmup(self, window_size: int, stride: int, image_hw: Any = None, eager_on_recompile: bool = False
               ) -> dict[str, Any]:
        self.warmups.append((window_size, stride, image_hw, eager_on_recompile))
        if self.fail_warmup:
            raise RuntimeError("CUDA out of memory (simulated, warm-up)")
        return {"compiled": True, "graphs_compiled": 3, "seconds": 0.0, "window_sizes": [window_size],
                "dino_buckets": [2, stride]}


@pytest.mark.parametrize("overlap", [True, False], ids=["output_thread", "serial"])
def test_oracle_end_to_end_outputs_match_ground_truth(ctx, seq, tmp_path, overlap):
    n_boot = 6
    params = dict(predictor="oracle", checkpoint="", window_size=6, stride=3, scale_source="fixed",
                  fixed_scale=first_window_metres_per_unit(seq, n_boot), publish_confidence=True,
                  publish_depth_rgb=True, num_track_queries=16, map_save_path=str(tmp_path / "m" / "map.ply"),
                  overlap_outputs=overlap)
    oracle = _EngineLikeOracle(seq, target_size=TARGET)
    oracle.fail_warmup = not overlap  # a failing warm-up is counted and the stream runs anyway
    h = Harness(ctx, f"/e2e_{int(overlap)}", params, predictor=oracle)
    try:
        assert h.node.runner.has_output_thread == overlap  # the output thread runs only when asked for
        h.play(seq, range(len(seq)))
        stamps = [int(s) for s in seq.stamps_ns]
        wait_for(lambda: len(h.got("depth/image")) == 12 and len(h.got("points")) == 12
                 and len(h.got("odometry")) == 12 and len(h.got("depth/rgb")) == 12, 30.0, h.state)
        wait_for(lambda: len(h.got("map")) >= 1 and stamp_ns_of(h.got("map")[-1]) == stamps[-1]
                 and len(h.got("diag")) >= 1, 5.0, "map of all frames and diagnostics")
        idx = {s: i for i, s in enumerate(stamps)}

        # depth: REP 118, source stamps in order, metres (fixed scale) against ground truth
        depths = h.got("depth/image")
        assert [stamp_ns_of(m) for m in depths] == stamps
        for m in depths:
            assert (m.header.frame_id, m.encoding, m.height, m.width, m.step) == (CAM, "32FC1", H, W, 4 * W)
            d = depth_msg_to_array(m)
            gt = seq.depth[idx[stamp_ns_of(m)]]
            ok = np.isfinite(d)
            assert ok.mean() > 0.9
            assert np.median(np.abs(d[ok] - gt[ok]) / gt[ok]) < 0.01
        infos = h.got("depth/camera_info")
        assert [stamp_ns_of(m) for m in infos] == stamps
        for m in infos:
            K, hw = camera_info_msg_to_intrinsics(m)
            assert hw == (H, W) and m.header.frame_id == CAM
            np.testing.assert_allclose(K, seq.K, atol=1e-6)
        for m in h.got("depth/confidence"):
            assert (m.encoding, m.height, m.width) == ("32FC1", H, W)
        for m in h.got("depth/rgb"):
            np.testing.assert_array_equal(image_msg_to_rgb(m), seq.rgb[idx[stamp_ns_of(m)]])

        # poses: odometry, path and TF in the map frame (= first camera), metres
        for m in h.got("odometry"):
            assert (m.header.frame_id, m.child_frame_id) == ("map", CAM)
            T = pose_msg_to_matrix(m.pose.pose)
            gt = seq.world_T_camera[idx[stamp_ns_of(m)]]
            assert np.linalg.norm(T[:3, 3] - gt[:3, 3]) < 5e-3
            assert rot_err_deg(T, gt) < 0.2
        wait_for(lambda: h.got("path") and len(h.got("path")[-1].poses) == 12, 3.0, "the path of all frames")
        path = h.got("path")[-1]
        assert [stamp_ns_of(p) for p in path.poses] == stamps and path.header.frame_id == "map"
        tfs = h.tf()
        assert [stamp_ns_of(t) for t in tfs] == stamps
        for t in tfs:
            assert (t.header.frame_id, t.child_frame_id) == ("map", CAM)
            gt = seq.world_T_camera[idx[stamp_ns_of(t)]]
            np.testing.assert_allclose(transform_msg_to_matrix(t.transform)[:3, 3], gt[:3, 3], atol=5e-3)

        # per-frame cloud: camera frame, every point re-projects onto its depth pixel
        for m in h.got("points"):
            assert m.header.frame_id == CAM and stamp_ns_of(m) in idx
            xyz, rgb = pointcloud2_msg_to_xyz_rgb(m)
            assert len(xyz) > 100 and rgb is not None
            gt = seq.depth[idx[stamp_ns_of(m)]]
            uv = xyz[:, :2] / xyz[:, 2:3] * np.diag(seq.K)[:2] + seq.K[:2, 2]
            u, v = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
            assert np.allclose(uv, np.stack([u, v], 1), atol=1e-3)
            assert np.median(np.abs(xyz[:, 2] - gt[v, u]) / gt[v, u]) < 0.01

        # map: transient local, map frame, newest source stamp, points on the scene surfaces
        m = h.got("map")[-1]
        assert m.header.frame_id == "map"
        xyz, _ = pointcloud2_msg_to_xyz_rgb(m)
        assert len(xyz) > 500 and len(xyz) == len(h.node.pipeline.world_map)
        front = xyz[:, 2] > 0.1
        uv = xyz[front, :2] / xyz[front, 2:3] * np.diag(seq.K)[:2] + seq.K[:2, 2]
        u, v = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
        inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
        z0 = seq.depth[0][v[inside], u[inside]]
        assert inside.sum() > 100
        assert np.median(np.abs(xyz[front][inside, 2] - z0) / z0) < 0.03

        # tracks: one message per window, source stamps, sizes consistent. They are published after
        # the window's frames (and after the map is marked dirty), so wait for them too.
        wait_for(lambda: len(h.got("tracks")) >= 3, 5.0, "tracks of the 3 windows")
        tracks = h.got("tracks")
        assert len(tracks) == 3
        for t in tracks:
            out = keypoint_tracks_msg_to_output(t)
            assert set(out.stamps_ns) <= set(stamps) and stamp_ns_of(t) == out.stamps_ns[-1]
            assert out.positions.shape == (6, 16, 2) and out.frame_id == CAM

        # diagnostics: metric, counts, device
        def diag_values(m: Any) -> dict:
            return {kv.key: kv.value for kv in m.status[0].values}

        wait_for(lambda: diag_values(h.got("diag")[-1])["frames_published"] == "12", 3.0, "diagnostics")
        diag = h.got("diag")[-1].status[0]
        values = {kv.key: kv.value for kv in diag.values}
        assert values["metric"] == "true" and values["depth_units"] == "m"
        assert int(values["frames_published"]) == 12 and values["device"].startswith("n/a")
        assert level(diag) == 0

        # services: save the map (path from the parameter), then reset
        from std_srvs.srv import Trigger

        for name in ("save_map", "reset"):
            cli = h.probe.create_client(Trigger, f"{h.ns}/vggt_node/{name}")
            assert cli.wait_for_service(timeout_sec=5.0)
            fut = cli.call_async(Trigger.Request())
            wait_for(fut.done, 5.0, f"{name} response")
            assert fut.result().success, fut.result().message
        with open(tmp_path / "m" / "map.ply", "rb") as f:
            head = f.read(200).decode("ascii", "replace")
        assert head.startswith("ply") and f"element vertex {len(xyz)}" in head
        assert h.node.pipeline.counters()["resets"] == 1 and len(h.node.pipeline.world_map) == 0
        # every accepted frame was handed to the predictor's prefetch once, and the reset cleared its
        # caches (the same stamps come again)
        assert oracle.prefetched == stamps and oracle.cache_clears == 1
        # warm-up: once, before the first window, at the camera size, shapes not warmed run eagerly
        assert oracle.warmups == [(6, 3, (H, W), True)]
        assert h.node.stats().get("warmup_failures", 0) == (0 if overlap else 1)
        # after the reset the same stamps are a new stream, accepted again
        h.play(seq, range(6))
        wait_for(lambda: len(h.got("depth/image")) == 18, 15.0, "frames after reset")
        assert h.node.stats().get("worker_errors", 0) == 0
    finally:
        h.close()


class SlowPredictor(PredictorBase):
    """The oracle, slower than the camera (to force the queue policy)."""

    def __init__(self, inner: Any, delay: float) -> None:
        self.inner, self.delay = inner, delay

    def predict(self, images, query_points=None, frame_keys=None):
        time.sleep(self.delay)
        return self.inner.predict(images, query_points, frame_keys)


def test_bad_input_keeps_node_up_and_is_counted(ctx):
    seq = make_sequence("forward", 24, height=H, width=W, fps=10.0)
    stamps = [int(s) for s in seq.stamps_ns]
    h = Harness(ctx, "/bad", dict(predictor="oracle", checkpoint="", window_size=4, stride=2,
                                      skip_policy="keep_newest"),
                predictor=SlowPredictor(OraclePredictor(seq, target_size=TARGET), 0.25))
    try:
        h.play(seq, range(4))
        wait_for(lambda: len(h.got("depth/image")) == 4, 10.0, "bootstrap window")
        img = seq.rgb[4]
        h.send(img, stamps[4], encoding="yuv422")  # unsupported encoding
        h.send(np.zeros((0, 0, 3), np.uint8), stamps[4] + 1)  # zero-size
        h.send(np.ascontiguousarray(img[::2, ::2]), stamps[4] + 2)  # resolution change
        h.send(img, stamps[2] + 7)  # stamp going back
        # burst at 50 Hz, much faster than the 0.25 s inference (not faster than DDS delivers: the
        # image subscription is best effort, and the test wants every frame to reach the node)
        h.play(seq, range(4, 24), wait=False, period=0.02)
        wait_for(lambda: h.node.pipeline.counters()["received"] >= 26, 10.0, h.state)
        wait_for(lambda: h.node.pipeline.counters()["pending"] < 2
                 and len(h.got("depth/image")) >= 6, 15.0, "queue drained")
        time.sleep(0.6)  # a window in flight finishes
        # published frames first, counters second: a frame still pending when the counters are read
        # cannot have been published already, so the sum below never counts a frame twice
        out = [stamp_ns_of(m) for m in h.got("depth/image")]
        c, s = h.node.pipeline.counters(), h.node.stats()
        assert s["rejected_unsupported_encoding"] == 1 and s["rejected_bad_image"] == 1
        assert s["rejected_messages"] == 2
        assert c["rejected_size_change"] == 1 and c["rejected_out_of_order"] == 1
        assert c["skipped"] > 0  # burst: older pending frames dropped (keep_newest)
        assert s.get("worker_errors", 0) == 0
        assert set(out) <= set(stamps) and out == sorted(set(out))  # each once, in order, source stamps
        assert len(out) + c["skipped"] + c["pending"] <= 24
        for m in h.got("depth/image"):
            assert (m.height, m.width) == (H, W)
        wait_for(lambda: any(int({kv.key: kv.value for kv in m.status[0].values}["messages_rejected"]) == 2
                             for m in h.got("diag")), 3.0, "diagnostics with rejections")
        diag = h.got("diag")[-1].status[0]
        values = {kv.key: kv.value for kv in diag.values}
        assert level(diag) == 1 and "rejected" in diag.message
        assert int(values["frames_skipped"]) == c["skipped"] and values["metric"] == "false"
        assert values["depth_units"] == "VGGT world units"
        assert int(values["frames_rejected_size_change"]) == 1
    finally:
        h.close()


def _mount() -> np.ndarray:
    B = np.eye(4)
    B[:3, :3] = REP103_R_OPTICAL.T  # base_T_camera: optical z forward = base x
    B[:3, 3] = [0.2, 0.0, 0.5]
    return B


@pytest.mark.parametrize("map_to_odom", [False, True])
def test_base_frame_tf_composition(ctx, seq, map_to_odom):
    B = _mount()
    # metric world: the oracle without normalisation keeps metres
    oracle = OraclePredictor(seq, target_size=TARGET, normalize_scale=False)
    idx = {int(s): i for i, s in enumerate(seq.stamps_ns)}
    D = np.eye(4)
    D[:3, :3] = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    D[:3, 3] = [1.0, 2.0, 0.0]
    tf = {("base_link", CAM): B}
    if map_to_odom:  # an external odometry: odom_T_base = D @ (ground-truth base motion)
        tf[("odom", "base_link")] = lambda s: D @ B @ seq.world_T_camera[idx[s]] @ invert_pose(B)
    params = dict(predictor="oracle", checkpoint="", window_size=4, stride=2, scale_source="fixed",
                  odom_frame="odom", base_frame="base_link", publish_map_to_odom=map_to_odom,
                  map_to_odom_period_s=60.0)  # the periodic republication has its own test
    h = Harness(ctx, "/m2o" if map_to_odom else "/base", params, predictor=oracle, tf_transforms=tf)
    try:
        h.play(seq, range(6))
        last = int(seq.stamps_ns[5])
        wait_for(lambda: len(h.got("odometry")) == 6 and len(h.got("map")) >= 1
                 and any(stamp_ns_of(t) == last and t.child_frame_id == "odom" for t in h.tf()), 15.0,
                 "6 poses, a map and the last map -> odom")
        tfs = h.tf()
        # map -> odom (external odometry: our correction of it) at each image; else the odometry
        # odom -> base_link at each image and the pose graph's correction map -> odom at each window's
        # last frame (REP 105)
        edges = [("map", "odom")] if map_to_odom else [("odom", "base_link"), ("map", "odom")]
        stamps = [int(s) for s in seq.stamps_ns[:6]]
        for edge in edges:
            mine = [t for t in tfs if (t.header.frame_id, t.child_frame_id) == edge]
            got = [stamp_ns_of(t) for t in mine]
            if edge == ("map", "odom") and not map_to_odom:
                assert got == sorted(set(got)) and set(got) < set(stamps) and got[-1] == stamps[-1], got
            else:
                assert got == stamps, edge
            for t in mine:
                T = transform_msg_to_matrix(t.transform)
                if edge == ("odom", "base_link"):
                    expected = B @ seq.world_T_camera[idx[stamp_ns_of(t)]] @ invert_pose(B)
                else:  # the external odometry's drift D; the graph's correction of a noiseless oracle: none
                    expected = invert_pose(D) if map_to_odom else np.eye(4)
                np.testing.assert_allclose(T, expected, atol=5e-3)
        assert all((t.header.frame_id, t.child_frame_id) in edges for t in tfs)
        world = "map" if map_to_odom else "odom"
        for m in h.got("odometry"):
            assert (m.header.frame_id, m.child_frame_id) == (world, "base_link")
        assert h.got("map")[-1].header.frame_id == "map"  # the graph's map (or the corrected one)
        # the map is in the base frame at the first keyframe: moved back into camera 0 it lies on the
        # surfaces that camera sees
        xyz, _ = pointcloud2_msg_to_xyz_rgb(h.got("map")[-1])
        cam0 = xyz.astype(np.float64) @ invert_pose(B)[:3, :3].T + invert_pose(B)[:3, 3]
        front = cam0[:, 2] > 0.1
        uv = cam0[front, :2] / cam0[front, 2:3] * np.diag(seq.K)[:2] + seq.K[:2, 2]
        u, v = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
        inside = (u >= 0) & (u < W) & (v >= 0) & (v < H)
        z0 = seq.depth[0][v[inside], u[inside]]
        assert inside.sum() > 100
        assert np.median(np.abs(cam0[front][inside, 2] - z0) / z0) < 0.03
    finally:
        h.close()


def test_compressed_rgbd_stream_gets_metric_depth_from_the_depth_topic(ctx, seq):
    params = dict(predictor="oracle", checkpoint="", window_size=4, stride=2, image_transport="compressed",
                  scale_source="depth", camera_frame="override_optical")
    h = Harness(ctx, "/rgbd", params, predictor=OraclePredictor(seq, target_size=TARGET))
    try:
        for i in range(6):
            h.send_rgbd_compressed(seq.rgb[i], seq.depth[i], int(seq.stamps_ns[i]))
        wait_for(lambda: len(h.got("depth/image")) == 6, 15.0, h.state)
        assert h.node.pipeline.is_metric and h.node.stats().get("frames_without_metric_depth", 0) == 0
        idx = {int(s): i for i, s in enumerate(seq.stamps_ns)}
        for m in h.got("depth/image"):
            assert m.header.frame_id == "override_optical"  # the camera_frame parameter wins
            d, gt = depth_msg_to_array(m), seq.depth[idx[stamp_ns_of(m)]]
            ok = np.isfinite(d)
            assert ok.mean() > 0.9 and np.median(np.abs(d[ok] - gt[ok]) / gt[ok]) < 0.01
        for m in h.got("odometry"):  # metric poses in the first camera's frame
            gt = seq.world_T_camera[idx[stamp_ns_of(m)]]
            assert np.linalg.norm(pose_msg_to_matrix(m.pose.pose)[:3, 3] - gt[:3, 3]) < 0.01
    finally:
        h.close()


def test_oom_shrinks_the_window_and_keeps_running(ctx, seq):
    pred = OomAbove(OraclePredictor(seq, target_size=TARGET), 4)
    h = Harness(ctx, "/oom", dict(predictor="oracle", checkpoint="", window_size=6, stride=3), predictor=pred)
    try:
        h.play(seq, range(12))
        wait_for(lambda: len(h.got("depth/image")) == 10, 15.0, "10 frames (2 lost to the OOM)")
        s = h.node.stats()
        assert s["oom_events"] == 2 and s["frames_dropped_oom"] == 2
        assert h.node.diagnostics_values()["max_window_frames"] == 4
        assert pred.sizes[:3] == [6, 5, 4] and max(pred.sizes[3:]) <= 4
        out = [stamp_ns_of(m) for m in h.got("depth/image")]
        assert out == [int(x) for x in seq.stamps_ns[2:]]
    finally:
        h.close()


def test_small_random_vggt_on_cpu_end_to_end(ctx, seq):
    params = dict(predictor="vggt", model_config="small", checkpoint="", device="cpu", window_size=3,
                  stride=1, num_track_queries=4, depth_scale_factor=0.5, max_alignment_residual=1e6,
                  min_valid_pixels=3)
    h = Harness(ctx, "/small", params)
    try:
        h.play(seq, range(4))
        wait_for(lambda: len(h.got("depth/image")) >= 3, 40.0, "bootstrap window of the tiny VGGT")
        for m in h.got("depth/image"):
            assert (m.encoding, m.height, m.width, m.header.frame_id) == ("32FC1", H // 2, W // 2, CAM)
            assert stamp_ns_of(m) in set(int(s) for s in seq.stamps_ns[:4])
        infos = h.got("depth/camera_info")
        wait_for(lambda: len(h.got("depth/camera_info")) >= 3, 5.0, "depth camera info")
        infos = h.got("depth/camera_info")
        assert (infos[0].height, infos[0].width) == (H // 2, W // 2)
        assert [stamp_ns_of(m) for m in infos] == [stamp_ns_of(m) for m in h.got("depth/image")][
            :len(infos)]
        # tracks follow the window's frames on the worker thread: wait, the depth images may be ahead
        wait_for(lambda: len(h.got("tracks")) >= 1, 10.0, "tracks of the bootstrap window")
        assert h.node.diagnostics_values()["device"] == "cpu"
        assert h.node.stats().get("worker_errors", 0) == 0
    finally:
        h.close()


def test_invalid_parameters_fail_at_startup(ctx):
    from vggt_ros.ros.node import VggtNode

    with pytest.raises(ValueError, match="window_size"):
        VggtNode(params=dict(predictor="oracle", checkpoint="", window_size=1), predictor=object(),
                 context=ctx)
    with pytest.raises(ValueError, match="oracle"):
        VggtNode(params=dict(predictor="oracle", checkpoint=""), context=ctx)



def test_main_exits_with_a_clear_message_on_invalid_parameters(capsys):
    from vggt_ros.ros.node import main

    rc = main(["--ros-args", "-p", "window_size:=1", "-p", "predictor:=vggt"])
    assert rc == 2
    assert "window_size" in capsys.readouterr().err


def test_a_bag_loop_resets_the_node_automatically(ctx, seq):
    """Stamps jumping back by more than time_jump_reset_s (a bag played in a loop): the node starts a
    new world by itself, counted, and the repeated frames come out again."""
    params = dict(predictor="oracle", checkpoint="", window_size=4, stride=2, time_jump_reset_s=0.5)
    h = Harness(ctx, "/loop", params, predictor=OraclePredictor(seq, target_size=TARGET))
    try:
        h.play(seq, range(8))
        wait_for(lambda: len(h.got("depth/image")) == 8, 15.0, h.state)
        h.play(seq, range(4))  # 0.7 s back
        wait_for(lambda: len(h.got("depth/image")) == 12, 15.0, h.state)
        assert h.node.stats()["time_jump_resets"] == 1
        assert h.node.pipeline.counters()["resets"] == 1
        assert h.node.pipeline.counters().get("rejected_out_of_order", 0) == 0
        stamps = [stamp_ns_of(m) for m in h.got("depth/image")]
        assert stamps[8:] == [int(s) for s in seq.stamps_ns[:4]]
    finally:
        h.close()


def test_managed_node_under_a_lifecycle_manager(ctx, seq):
    """autostart false: the node waits unconfigured; a manager (here a client of its lifecycle
    services, as nav2_lifecycle_manager calls them) configures, activates, deactivates and cleans it
    up; frames flow only while it is active."""
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from rclpy.executors import MultiThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from vggt_ros.ros.node import VggtNode

    node = VggtNode(params=dict(predictor="oracle", checkpoint="", window_size=4, stride=2, autostart=False,
                                skip_policy="keep_all", target_size=TARGET, odom_frame="", base_frame=""),
                    predictor=OraclePredictor(seq, target_size=TARGET), context=ctx, namespace="/managed")
    manager = Node("manager", namespace="/managed", context=ctx)
    depth: list = []
    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    manager.create_subscription(Image, "depth/image", depth.append, reliable)
    image_pub = manager.create_publisher(Image, "image", reliable)
    change = manager.create_client(ChangeState, "/managed/vggt_node/change_state")
    get = manager.create_client(GetState, "/managed/vggt_node/get_state")
    ex = MultiThreadedExecutor(num_threads=3, context=ctx)
    ex.add_node(node)
    ex.add_node(manager)
    thread = threading.Thread(target=ex.spin, daemon=True)
    thread.start()

    def call(client, request):
        assert client.wait_for_service(timeout_sec=5.0)
        fut = client.call_async(request)
        wait_for(fut.done, 10.0, f"{client.srv_name} response")
        return fut.result()

    def state() -> int:
        return call(get, GetState.Request()).current_state.id

    def transition(tid: int) -> None:
        assert call(change, ChangeState.Request(transition=Transition(id=tid))).success

    def send(i: int) -> None:
        image_pub.publish(to_rclpy(Image, rgb_image_fields(seq.rgb[i], int(seq.stamps_ns[i]), CAM)))

    try:
        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        assert node.count_publishers("/managed/depth/image") == 0 and node.runner is None
        transition(Transition.TRANSITION_CONFIGURE)
        assert state() == State.PRIMARY_STATE_INACTIVE
        assert node.count_subscribers("/managed/image") == 0  # inputs only while active
        transition(Transition.TRANSITION_ACTIVATE)
        assert state() == State.PRIMARY_STATE_ACTIVE
        wait_for(lambda: image_pub.get_subscription_count() == 1
                 and manager.count_publishers("/managed/depth/image") == 1, 10.0, "discovery")
        for i in range(4):
            send(i)
            time.sleep(0.05)
        wait_for(lambda: len(depth) == 4, 15.0, "the bootstrap window's depth while active")
        transition(Transition.TRANSITION_DEACTIVATE)
        assert state() == State.PRIMARY_STATE_INACTIVE
        wait_for(lambda: node.count_subscribers("/managed/image") == 0, 5.0, "inputs gone")
        transition(Transition.TRANSITION_CLEANUP)
        assert state() == State.PRIMARY_STATE_UNCONFIGURED and node.runner is None
        wait_for(lambda: manager.count_publishers("/managed/depth/image") == 0, 5.0, "publishers gone")
        assert len(depth) == 4
    finally:
        ex.shutdown(timeout_sec=5.0)
        node.destroy_node()
        manager.destroy_node()
        thread.join(5.0)


def test_tf_listener_spins_its_own_thread(monkeypatch):
    """The node spins one thread and looks transforms up (with a timeout) inside its image callback:
    the tf2 listener must be fed by its own node and thread, or a waiting lookup could never be
    answered. (tf2_ros is not installable here: a stand-in records how it is built.)"""
    import types

    from vggt_ros.ros.factories import default_tf_buffer

    built = {}

    class Listener:
        def __init__(self, buffer, node, *, spin_thread=False, **kw):
            built.update(buffer=buffer, node=node, spin_thread=spin_thread)

    fake = types.SimpleNamespace(Buffer=object, TransformListener=Listener)
    monkeypatch.setitem(sys.modules, "tf2_ros", fake)
    holder = types.SimpleNamespace()
    buffer = default_tf_buffer(holder)
    assert built == {"buffer": buffer, "node": None, "spin_thread": True}
    assert isinstance(holder._tf_listener, Listener)
