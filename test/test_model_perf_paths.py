"""Performance paths must not change results: patch-token cache, head selection, embedding memo,
frame chunking, async/prefetch, torch.compile wrapper, SDPA kernel choice, and the OOM shrink guard.
Compiled blocks: DINOv2 batch buckets (padding) and the warm-up leave no compilation to the stream.

Small golden config with the golden weight rule, CPU fp32, tiny images (fast)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
from golden_weights import golden_config, small_golden_model, textured_frames
from torch.nn.attention import SDPBackend, sdpa_kernel

from vggt_ros.model.compiled import batch_buckets, bucket_for, compiled_graph_count
from vggt_ros.model.config import VGGTConfig
from vggt_ros.model.engine import InferenceEngine
from vggt_ros.model.heads.embeddings import (
    add_dpt_position_embedding,
    dpt_position_embedding,
    scaled_dpt_position_embedding,
)
from vggt_ros.model.patch_cache import PatchTokenCache, cache_key, embed_padded, embed_with_cache
from vggt_ros.model.vggt import VGGT

TARGET = 70  # 120x160 camera -> 70x56 network input


@pytest.fixture(scope="module")
def model() -> VGGT:
    return small_golden_model()


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return textured_frames(6, seed=9, noise=12, step=9)


def _tensor(frames: list[np.ndarray]) -> torch.Tensor:
    from vggt_ros.model.preprocessing import preprocess_images

    x, _ = preprocess_images(frames, target_size=TARGET)
    return x.unsqueeze(0)


@contextlib.contextmanager
def counting_embeds(model, calls: list[int]):
    """Append the batch size of every DINOv2 embedding call to ``calls`` while inside."""
    orig = model.aggregator.embed_patches
    model.aggregator.embed_patches = lambda images: calls.append(images.shape[1]) or orig(images)
    try:
        yield calls
    finally:
        del model.aggregator.embed_patches  # the instance attribute shadowed the method


# ------------------------------------------------------------------ patch-token cache
def test_cached_tokens_give_the_uncached_outputs_across_overlapping_windows(model, frames):
    cache = PatchTokenCache(16)
    calls: list[int] = []
    windows = [(0, 1, 2, 3), (2, 3, 4, 5)]  # stride 2: frames 2 and 3 are shared
    with torch.inference_mode():
        for keys in windows:
            x = _tensor([frames[k] for k in keys])
            ref = model(x)
            with counting_embeds(model, calls):
                tokens = embed_with_cache(model.aggregator, x, list(keys), cache)
            torch.testing.assert_close(tokens, model.aggregator.embed_patches(x), atol=1e-5, rtol=1e-5)
            out = model(x, patch_tokens=tokens)
            for name in ("pose_enc", "depth", "depth_conf", "world_points"):
                torch.testing.assert_close(out[name], ref[name], atol=1e-5, rtol=1e-5, msg=name)
    assert calls == [4, 2]  # the second window embeds only its 2 new frames, in one batch
    assert cache.stats() == {"hits": 2, "misses": 6, "evictions": 0, "size": 6, "max_frames": 16}


def test_cache_is_a_bounded_lru(model, frames):
    cache = PatchTokenCache(3)
    with torch.inference_mode():
        for start in range(4):  # windows of 2 with stride 1: keys 0..4
            keys = [start, start + 1]
            embed_with_cache(model.aggregator, _tensor([frames[k] for k in keys]), keys, cache)
            assert len(cache) <= 3
    x = _tensor(frames[:1])
    assert cache_key(4, x, model.aggregator) in cache and cache_key(0, x, model.aggregator) not in cache
    assert cache.evictions == 2 and cache.hits == 3 and cache.misses == 5
    # touching an entry makes it most recent: it survives the next insertions
    assert cache.get(cache_key(2, x, model.aggregator)) is not None
    cache.put("a", torch.zeros(1))
    cache.put("b", torch.zeros(1))
    assert cache_key(2, x, model.aggregator) in cache and cache_key(3, x, model.aggregator) not in cache
    off = PatchTokenCache(0)
    with torch.inference_mode():
        embed_with_cache(model.aggregator, x, [0], off)
    assert len(off) == 0 and off.misses == 1
    with pytest.raises(ValueError, match="max_frames"):
        PatchTokenCache(-1)


def test_cache_keys_separate_sizes_dtypes_and_reject_bad_keys(model, frames):
    x = _tensor(frames[:1])
    key = cache_key(7, x, model.aggregator)
    assert key != cache_key(7, x[..., :42, :], model.aggregator)  # other network size
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert key != cache_key(7, x, model.aggregator)  # other compute dtype
    cache = PatchTokenCache(4)
    with pytest.raises(ValueError, match="unique"):
        embed_with_cache(model.aggregator, _tensor(frames[:2]), [1, 1], cache)
    with pytest.raises(ValueError, match="frame_keys"):
        embed_with_cache(model.aggregator, _tensor(frames[:2]), [1], cache)
    with pytest.raises(ValueError, match=r"\[1, S"):
        embed_with_cache(model.aggregator, torch.cat([x, x]), [1], cache)


def test_engine_cache_matches_uncached_engine(model, frames):
    cached = InferenceEngine(model, device="cpu", target_size=TARGET, patch_cache_size=8)
    plain = InferenceEngine(model, device="cpu", target_size=TARGET, patch_cache_size=0)
    for keys in [(0, 1, 2, 3), (2, 3, 4, 5)]:
        imgs = [frames[k] for k in keys]
        a = cached.predict(imgs, frame_keys=[100 + k for k in keys])
        b = plain.predict(imgs, frame_keys=[100 + k for k in keys])
        for name in ("extrinsics", "intrinsics", "depth", "depth_conf", "world_points"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-5, rtol=1e-5, err_msg=name)
    assert cached.patch_cache.stats()["hits"] == 2 and plain.patch_cache.stats()["size"] == 0


# ------------------------------------------------------------------ head selection
def test_head_selection_runs_only_the_chosen_heads(model, frames, monkeypatch):
    x = _tensor(frames[:3])
    with torch.inference_mode():
        ref = model(x)

        def boom(*args, **kwargs):
            raise AssertionError("this head must not run")

        with monkeypatch.context() as m:
            m.setattr(model.point_head, "forward", boom)
            m.setattr(model.depth_head, "forward", boom)
            cam = model(x, heads={"camera"})
        assert set(cam) == {"pose_enc", "pose_enc_list", "images"}
        torch.testing.assert_close(cam["pose_enc"], ref["pose_enc"], atol=0, rtol=0)
        with monkeypatch.context() as m:
            m.setattr(model.point_head, "forward", boom)
            cd = model(x, heads=["camera", "depth"])
        assert "world_points" not in cd and "world_points_conf" not in cd
        torch.testing.assert_close(cd["depth"], ref["depth"], atol=0, rtol=0)
        chunked = model(x, heads={"depth"}, frames_chunk_size=1)
        torch.testing.assert_close(chunked["depth"], ref["depth"], atol=1e-6, rtol=1e-6)
        q = torch.tensor([[[10.0, 12.0], [30.0, 40.0]]])
        for bad, match in [(dict(heads={"camera", "normals"}), "unknown"),
                           (dict(heads={"track"}), "needs query_points"),
                           (dict(heads={"camera"}, query_points=q), "not in the selected")]:
            with pytest.raises(ValueError, match=match):
                model(x, **bad)


def test_head_selection_decides_the_aggregator_layers(model):
    last = model.config.depth - 1
    dpt = set(model.config.intermediate_layer_idx)
    assert model.required_layers(False, heads={"camera"}) == {last}
    assert model.required_layers(False, heads={"depth"}) == dpt
    assert model.required_layers(False, heads={"track"}) == set()  # no queries: no tracks
    assert model.required_layers(True, heads={"track"}) == dpt
    assert model.required_layers(False, heads=None) == dpt | {last}


def test_engine_world_points_option_and_chunking(model, frames, monkeypatch):
    full = InferenceEngine(model, device="cpu", target_size=TARGET)
    lean = InferenceEngine(model, device="cpu", target_size=TARGET, world_points=False, frames_chunk_size=1)
    ref = full.predict(frames[:3])
    assert ref.world_points is not None
    monkeypatch.setattr(model.point_head, "forward", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    p = lean.predict(frames[:3])
    assert p.world_points is None and p.world_points_conf is None
    np.testing.assert_allclose(p.depth, ref.depth, atol=1e-6, rtol=1e-6)
    np.testing.assert_array_equal(p.extrinsics, ref.extrinsics)
    with pytest.raises(ValueError, match="frames_chunk_size"):
        InferenceEngine(model, device="cpu", frames_chunk_size=0)
    no_point = VGGT(VGGTConfig(**{**golden_config("small"), "enable_point": False}))
    assert InferenceEngine(no_point, device="cpu").world_points is False
    with pytest.raises(ValueError, match="point_head"):
        InferenceEngine(no_point, device="cpu", world_points=True)


# ------------------------------------------------------------------ DPT embedding memo
def test_dpt_embedding_memo_is_exact():
    scaled_dpt_position_embedding.cache_clear()
    cpu = torch.device("cpu")
    x = torch.randn(2, 8, 5, 7)
    expected = x + (dpt_position_embedding(8, 5, 7, 1.25, torch.float32, cpu) * 0.1).to(x.dtype).unsqueeze(0)
    for _ in range(3):
        torch.testing.assert_close(add_dpt_position_embedding(x, 70, 56), expected, atol=0, rtol=0)
    info = scaled_dpt_position_embedding.cache_info()
    assert info.misses == 1 and info.hits == 2
    xd = x.double()
    add_dpt_position_embedding(xd, 70, 56)
    assert scaled_dpt_position_embedding.cache_info().misses == 2  # per dtype
    with torch.inference_mode():  # built outside inference mode: usable in both modes
        add_dpt_position_embedding(x, 70, 56)
    y = torch.randn(1, 8, 5, 7, requires_grad=True)
    add_dpt_position_embedding(y, 70, 56).sum().backward()
    torch.testing.assert_close(y.grad, torch.ones_like(y))


# ------------------------------------------------------------------ async / prefetch / compile / SDPA
def test_async_and_prefetch_equal_the_synchronous_path(model, frames):
    sync = InferenceEngine(model, device="cpu", target_size=TARGET, patch_cache_size=8)
    asyn = InferenceEngine(model, device="cpu", target_size=TARGET, patch_cache_size=8)
    windows = [([frames[k] for k in keys], None, list(keys)) for keys in [(0, 1, 2), (1, 2, 3), (2, 3, 4)]]
    try:
        expected = [sync.predict(*w) for w in windows]
        futures = [asyn.predict_async(*w) for w in windows]  # all submitted before any finished
        got = [f.result(timeout=60) for f in futures]
        streamed = list(asyn.predict_many(windows, prefetch=1))
        for e, g, s in zip(expected, got, streamed):
            for name in ("extrinsics", "depth", "depth_conf", "world_points"):
                np.testing.assert_array_equal(getattr(g, name), getattr(e, name), err_msg=name)
                np.testing.assert_array_equal(getattr(s, name), getattr(e, name), err_msg=name)
        assert asyn.patch_cache.stats()["hits"] == sync.patch_cache.stats()["hits"] + 9
        with pytest.raises(ValueError, match="frame_keys"):
            asyn.predict_async(frames[:2], None, [1]).result(timeout=60)
    finally:
        asyn.close()


def test_prepare_pins_memory_for_cuda(model, frames, monkeypatch):
    eng = InferenceEngine(model, device="cpu", target_size=TARGET)
    pinned = []
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a: pinned.append(self.shape) or self)
    assert not eng.prepare(frames[:2]).tensor.is_pinned() and pinned == []
    eng.device = torch.device("cuda")  # only prepare() is exercised: it must pin for a CUDA engine
    prepared = eng.prepare(frames[:2])
    # CUDA gets the uint8 images (a quarter of the float bytes), converted on the device
    assert pinned == [torch.Size([2, 56, 70, 3])] and prepared.tensor.dtype == torch.uint8


def test_uint8_upload_path_gives_the_float_path_results(model, frames):
    import dataclasses

    eng = InferenceEngine(model, device="cpu", target_size=TARGET, patch_cache_size=0)
    prepared = eng.prepare(frames[:3])
    assert prepared.tensor.dtype == torch.float32
    as_u8 = dataclasses.replace(prepared, tensor=torch.from_numpy(prepared.images_u8.copy()))
    a, b = eng.predict_prepared(prepared), eng.predict_prepared(as_u8)
    np.testing.assert_array_equal(a.depth, b.depth)
    np.testing.assert_array_equal(a.extrinsics, b.extrinsics)


# ------------------------------------------------------------------ preprocessing cache + prefetch
def test_preprocess_cache_reuses_frames_and_matches_uncached(model, frames):
    cached = InferenceEngine(model, device="cpu", target_size=TARGET, patch_cache_size=0,
                             preprocess_cache_size=8)
    plain = InferenceEngine(model, device="cpu", target_size=TARGET, patch_cache_size=0,
                            preprocess_cache_size=0)
    for keys in [(0, 1, 2, 3), (2, 3, 4, 5)]:
        a = cached.prepare([frames[k] for k in keys], None, list(keys))
        b = plain.prepare([frames[k] for k in keys], None, list(keys))
        np.testing.assert_array_equal(a.images_u8, b.images_u8)
        np.testing.assert_array_equal(a.tensor.numpy(), b.tensor.numpy())
        assert a.infos == b.infos
    assert cached.preprocess_stats == {"hits": 2, "misses": 6, "prefetch_skipped": 0}
    assert plain.preprocess_stats == {"hits": 0, "misses": 0, "prefetch_skipped": 0}
    # same key, different image size (e.g. after a camera reset): never served from the cache
    small = [f[:60, :80] for f in frames[:2]]
    c = cached.prepare(small, None, [0, 1])
    np.testing.assert_array_equal(c.images_u8, plain.prepare(small).images_u8)
    assert cached.preprocess_stats["hits"] == 2
    # the cache is bounded (LRU)
    cached.prepare(frames, None, list(range(10, 16)))
    assert len(cached._prep_cache) == 8
    # after clear_caches (node reset) a reused key is preprocessed again from its new image
    cached.clear_caches()
    other = [frames[5], frames[4]]
    again = cached.prepare(other, None, [10, 11])  # keys that held frames 0 and 1 before
    np.testing.assert_array_equal(again.images_u8, plain.prepare(other).images_u8)


def test_prefetch_fills_the_cache_in_the_background(model, frames):
    eng = InferenceEngine(model, device="cpu", target_size=TARGET, patch_cache_size=0,
                          preprocess_cache_size=8)
    try:
        eng.prefetch(frames[:4], [0, 1, 2, 3]).result(timeout=30)
        assert eng.preprocess_stats == {"hits": 0, "misses": 4, "prefetch_skipped": 0}
        eng.prepare(frames[:4], None, [0, 1, 2, 3])
        assert eng.preprocess_stats == {"hits": 4, "misses": 4, "prefetch_skipped": 0}
        with pytest.raises(ValueError, match="frame_keys"):
            eng.prefetch(frames[:2], [0])
        # bounded queue: while MAX_PREFETCH_PENDING calls wait, further calls are skipped and counted
        eng._prefetch_pending = eng.MAX_PREFETCH_PENDING
        assert eng.prefetch(frames[4:5], [4]) is None
        assert eng.preprocess_stats["prefetch_skipped"] == 1
        eng._prefetch_pending = 0
    finally:
        eng.close()


# ------------------------------------------------------------------ DPT heads under autocast
def test_dpt_autocast_runs_the_dpt_heads_in_the_autocast_dtype(model, frames):
    x = _tensor(frames[:2])
    seen: list[torch.dtype] = []
    hook = model.depth_head.scratch.output_conv2.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    try:
        with torch.inference_mode():
            ref = model(x, heads={"camera", "depth"})
            same = model(x, heads={"camera", "depth"}, dpt_autocast=True)  # no autocast active: no effect
            with torch.autocast("cpu", dtype=torch.bfloat16):
                f32 = model(x, heads={"camera", "depth"})
                b16 = model(x, heads={"camera", "depth"}, dpt_autocast=True)
    finally:
        hook.remove()
    assert seen == [torch.float32, torch.float32, torch.float32, torch.bfloat16]
    torch.testing.assert_close(same["depth"], ref["depth"], rtol=0, atol=0)
    for out in (f32, b16):
        assert out["depth"].dtype == torch.float32 and out["depth_conf"].dtype == torch.float32
    # bf16 convolutions: same depth to bf16 rounding, but not bit-identical (the flag took effect)
    torch.testing.assert_close(b16["depth"], f32["depth"], rtol=5e-2, atol=5e-2)
    assert not torch.equal(b16["depth"], f32["depth"])


def test_compiled_engine_matches_eager(model, frames):
    # The "eager" dynamo backend traces the whole forward (graph capture, guards) without inductor's
    # C++ code generation, which takes ~80 s for this config on 2 cores (compile=True on GPU).
    torch._dynamo.reset()
    compiled = InferenceEngine(model, device="cpu", target_size=TARGET, compile="eager", patch_cache_size=0)
    plain = InferenceEngine(model, device="cpu", target_size=TARGET, patch_cache_size=0)
    assert compiled._forward is not model
    a, b = compiled.predict(frames[:2]), plain.predict(frames[:2])
    np.testing.assert_allclose(a.depth, b.depth, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(a.extrinsics, b.extrinsics, atol=1e-6, rtol=1e-6)


def test_regional_compile_keeps_keys_and_outputs(frames, monkeypatch):
    import vggt_ros.model.engine as engine_mod

    ref_model, model = small_golden_model(), small_golden_model()
    keys = list(model.state_dict())
    torch._dynamo.reset()
    n = engine_mod.compile_blocks(model, backend="eager")  # graph capture without inductor's C++ build
    cfg = model.config
    assert n == len(model.aggregator.patch_embed.blocks) + 2 * cfg.depth
    assert list(model.state_dict()) == keys  # checkpoints still load (no _orig_mod prefixes)
    a = InferenceEngine(model, device="cpu", target_size=TARGET, patch_cache_size=0).predict(frames[:2])
    b = InferenceEngine(ref_model, device="cpu", target_size=TARGET, patch_cache_size=0).predict(frames[:2])
    np.testing.assert_allclose(a.depth, b.depth, atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(a.extrinsics, b.extrinsics, atol=1e-6, rtol=1e-6)
    # the engine option routes to it and keeps the plain module as the forward
    seen = []
    monkeypatch.setattr(engine_mod, "compile_blocks", lambda m, backend="inductor": seen.append(m) or 0)
    eng = InferenceEngine(ref_model, device="cpu", target_size=TARGET, compile="blocks")
    assert seen == [ref_model] and eng._forward is ref_model


def test_aggregator_attention_runs_on_the_flash_kernel(model, frames):
    # If anything forced the math path (masks, need_weights, unsupported layouts), restricting SDPA
    # to the fused flash kernel would raise "No available kernel".
    x = _tensor(frames[:2])
    with torch.inference_mode():
        ref, _ = model.aggregator(x, keep_layers={model.config.depth - 1})
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
            out, _ = model.aggregator(x, keep_layers={model.config.depth - 1})
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ compiled shapes: buckets + warm-up
def test_batch_buckets():
    assert batch_buckets(16, 8) == (2, 4, 8, 16)
    assert batch_buckets(16, 6) == (2, 4, 6, 8, 16)  # the usual uncached count runs unpadded
    assert batch_buckets(6, 3) == (2, 3, 4, 6)
    assert batch_buckets(2, 1) == (2,)
    assert [bucket_for(n, (2, 4, 8, 16)) for n in (1, 2, 3, 5, 8, 9, 16)] == [2, 2, 4, 8, 8, 16, 16]
    assert [bucket_for(n, ()) for n in (1, 2, 3, 5, 17)] == [2, 2, 4, 8, 32]  # before any warm-up
    assert bucket_for(17, (2, 4, 8, 16)) == 32
    for bad in [(4, 5), (4, 0), (0, 1)]:
        with pytest.raises(ValueError, match="stride"):
            batch_buckets(*bad)


def test_padded_dino_batches_equal_the_unpadded_tokens(model, frames):
    cache = PatchTokenCache(16)
    calls: list[int] = []
    bucket = lambda n: bucket_for(n, (2, 4, 8))  # noqa: E731
    with torch.inference_mode():
        x = _tensor(frames)
        ref = model.aggregator.embed_patches(x)
        with counting_embeds(model, calls):
            padded = embed_padded(model.aggregator, x[:, :3], 4)
            first = embed_with_cache(model.aggregator, x[:, :5], [0, 1, 2, 3, 4], cache, bucket)  # 5 -> 8
            second = embed_with_cache(model.aggregator, x, [0, 1, 2, 3, 4, 5], cache, bucket)  # 1 -> 2
        with pytest.raises(ValueError, match="smaller"):
            embed_padded(model.aggregator, x, 2)
    assert calls == [4, 8, 2]
    assert padded.shape == (1, 3, *ref.shape[2:]) and second.shape == ref.shape
    torch.testing.assert_close(padded, ref[:, :3], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(first, ref[:, :5], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(second, ref, atol=1e-5, rtol=1e-5)
    assert len(cache) == 6  # the padding rows are not cached
    assert cache.discard([0, 1, "absent"]) == 2 and len(cache) == 4
    assert cache_key(2, x, model.aggregator) in cache and cache_key(0, x, model.aggregator) not in cache


def _stream(engine: InferenceEngine, frames: list[np.ndarray], window: int, uncached: list[int]):
    """Bootstrap window, then windows of ``window`` frames with the given numbers of new frames."""
    keys = list(range(window))
    out = []
    nxt = window
    for n in [0, *uncached]:
        keys = keys[n:] + list(range(nxt, nxt + n))
        nxt += n
        out.append((keys, engine.predict([frames[k % len(frames)] for k in keys],
                                         frame_keys=[100 + k for k in keys])))
    return out


@pytest.mark.parametrize("buckets", [True, False])
def test_warmup_leaves_no_compilation_to_the_stream(frames, buckets):
    # Dynamo's "eager" backend: real graph capture and guards (what decides recompilation) without
    # inductor's C++ build. Without buckets the same stream compiles again: the test can fail.
    torch._dynamo.reset()
    engine = InferenceEngine(small_golden_model(), device="cpu", target_size=TARGET, compile="blocks",
                             compile_backend="eager", shape_buckets=buckets, world_points=False,
                             patch_cache_size=32)
    report = engine.warmup(window_size=6, stride=3, image_hw=(120, 160))
    assert report["compiled"] and not report["skipped"] and report["graphs_compiled"] > 0
    assert report["window_sizes"] == [6] and [st["frames"] for st in report["steps"]] == [6, 6, 6]
    assert len(engine.patch_cache) == 0  # the synthetic frames are gone
    assert engine.warmup(6, 3, (120, 160))["skipped"]  # same arguments: nothing runs again
    misses, before = engine.patch_cache.misses, compiled_graph_count()
    uncached = [1, 2, 3, 2, 1, 3]
    got = _stream(engine, frames, 6, uncached)
    assert engine.patch_cache.misses - misses == 6 + sum(uncached)  # the counts really varied
    new_graphs = compiled_graph_count() - before
    if buckets:
        assert report["dino_buckets"] == [2, 3, 4, 6]
        assert new_graphs == 0
        # padded (and compiled) windows equal the plain eager engine's
        plain = InferenceEngine(small_golden_model(), device="cpu", target_size=TARGET, world_points=False,
                                patch_cache_size=32)
        for (keys, a), (_, b) in zip(got, _stream(plain, frames, 6, uncached)):
            for name in ("extrinsics", "intrinsics", "depth", "depth_conf"):
                np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-5, rtol=1e-5,
                                           err_msg=f"{name} {keys}")
    else:
        assert report["dino_buckets"] == []
        assert new_graphs >= 1  # one uncached frame: a DINOv2 batch size never seen


def test_warmup_extra_sizes_no_cache_and_eager_on_recompile(frames, caplog):
    torch._dynamo.reset()
    engine = InferenceEngine(small_golden_model(), device="cpu", target_size=TARGET, compile="blocks",
                             compile_backend="eager", world_points=False, patch_cache_size=0)
    report = engine.warmup(6, 3, (120, 160), extra_window_sizes=[5], eager_on_recompile=True)
    # no patch cache: every window embeds all its frames; 5 frames run as a DINOv2 batch of 6
    assert [(st["frames"], st["dino_batch"]) for st in report["steps"]] == [(6, 6), (5, 6)]
    plain = InferenceEngine(small_golden_model(), device="cpu", target_size=TARGET, world_points=False,
                            patch_cache_size=0)
    before = compiled_graph_count()
    with caplog.at_level("WARNING", logger="vggt_ros.model.engine"):
        for n in (5, 6, 4):  # 4 frames were not warmed up: eager instead of a compile stall
            a, b = engine.predict(frames[:n]), plain.predict(frames[:n])
            np.testing.assert_allclose(a.depth, b.depth, atol=1e-5, rtol=1e-5)
            np.testing.assert_allclose(a.extrinsics, b.extrinsics, atol=1e-5, rtol=1e-5)
    assert compiled_graph_count() == before
    assert [r.message for r in caplog.records if "not warmed up" in r.message] == [
        "window of 4 frames at 70x56 was not warmed up: it runs eagerly; "
        "warm sizes [(5, 56, 70), (6, 56, 70)]"]
    with pytest.raises(ValueError, match="image_hw"):
        InferenceEngine(small_golden_model(), device="cpu", compile="blocks",
                        compile_backend="eager").warmup(6, 3)


def test_eager_engine_warmup_is_a_noop_and_never_pads(model, frames):
    engine = InferenceEngine(model, device="cpu", target_size=TARGET, patch_cache_size=16)
    before = compiled_graph_count()
    report = engine.warmup(6, 3, (120, 160))
    assert report["compiled"] is False and report["steps"] == [] and compiled_graph_count() == before
    with counting_embeds(model, []) as calls:
        _stream(engine, frames, 5, [1, 3])
    assert calls == [5, 1, 3]  # exact batches: no padding cost without compiled blocks
