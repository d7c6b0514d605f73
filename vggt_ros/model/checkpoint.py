"""Find, read and strictly load VGGT weights (local .pt/.safetensors, a directory, or a Hub repo id).

Strict loading matters: a silently half-loaded 1.3 B-parameter model produces plausible-looking
garbage. Mismatches are therefore reported as one readable summary (counts per top-level module plus
the first keys), not PyTorch's multi-thousand-line dump.

Licence: the original ``facebook/VGGT-1B`` weights are for non-commercial use only;
``facebook/VGGT-1B-Commercial`` (gated on the Hub, same architecture) allows commercial use.
"""

from __future__ import annotations

import logging
import os
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

HUB_FILENAMES = ("model.safetensors", "model.pt")
LOCAL_PREFERENCE = ("model.safetensors", "model.pt", "model.pth")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
COMMERCIAL_REPO = "facebook/VGGT-1B-Commercial"
NONCOMMERCIAL_REPO = "facebook/VGGT-1B"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SHOW = 10


class CheckpointError(RuntimeError):
    """The checkpoint cannot be found, read or used; the message names the file or source."""


class CheckpointMismatchError(CheckpointError):
    """The state dict's keys or shapes differ from the model's (strict loading)."""


class CheckpointUnavailable(CheckpointError, FileNotFoundError):
    """The weights are not on this machine and cannot be fetched now: a local path that does not exist,
    or a Hub repo id that is not in the local cache while offline (``HF_HUB_OFFLINE``) or while the Hub
    cannot be reached. Raised within seconds, before any model is built; the message says how to pass a
    local file. A ``RuntimeError`` (the node's ``main`` reports it and exits 2) and, for callers of the
    older API, a ``FileNotFoundError``."""


LOCAL_FILE_HINT = ("pass a local weight file instead: checkpoint:=/path/to/model.pt (node or launch file) "
                   "or --checkpoint /path/to/model.pt (vggt-ros-replay); a .safetensors file or a "
                   "directory holding model.safetensors / model.pt works too")
# Seconds to wait for the Hub's answer before a download (HF_HUB_ETAG_TIMEOUT overrides); the probe as a
# whole, DNS included, is bounded by twice this plus one second. One attempt, no retries.
DEFAULT_HUB_PROBE_TIMEOUT_S = 5.0


def _is_hub_id(source: str) -> bool:
    return bool(_HUB_ID.match(source)) and not source.endswith(WEIGHT_SUFFIXES)


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _hub_cache_dir() -> str | None:
    """Cache location from the environment *now* (huggingface_hub freezes its constants at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def download_from_hub(repo_id: str, cache_dir: str | Path | None = None, revision: str | None = None,
                      local_files_only: bool | None = None) -> Path:
    """Path of the repo's weights in the HF cache (model.safetensors, else model.pt), downloading if allowed.

    Honours ``HF_HUB_OFFLINE`` (cache only) and ``HF_HUB_CACHE``/``HF_HOME`` as set at call time.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover - listed in setup.py
        raise CheckpointError(f"loading {repo_id!r} from the Hugging Face Hub needs huggingface_hub") from exc
    if local_files_only is None:
        local_files_only = _env_true("HF_HUB_OFFLINE")
    if cache_dir is None:
        cache_dir = _hub_cache_dir()
    errors = []
    for filename in HUB_FILENAMES:
        try:
            path = hf_hub_download(repo_id, filename, revision=revision, cache_dir=cache_dir,
                                   local_files_only=local_files_only, etag_timeout=hub_probe_timeout())
            return Path(path)
        except Exception as exc:  # noqa: BLE001 - each failure is reported below
            errors.append(f"{filename}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    hint = ""
    if local_files_only:
        hint = " (offline mode: HF_HUB_OFFLINE is set, only the local cache was searched)"
    if repo_id == COMMERCIAL_REPO:
        hint += "; this repo is gated: accept its terms on huggingface.co and log in (huggingface-cli login)"
    raise CheckpointError(
        f"could not get weights of Hub repo {repo_id!r}{hint} (cache: {cache_dir or 'default'}):\n  "
        + "\n  ".join(errors))


def hub_probe_timeout() -> float:
    """Timeout of the Hub reachability probe and of ``hf_hub_download``'s metadata request, seconds."""
    try:
        value = float(os.environ.get("HF_HUB_ETAG_TIMEOUT", DEFAULT_HUB_PROBE_TIMEOUT_S))
    except ValueError:
        value = DEFAULT_HUB_PROBE_TIMEOUT_S
    return value if value > 0 else DEFAULT_HUB_PROBE_TIMEOUT_S


def cached_hub_file(repo_id: str, cache_dir: str | Path | None = None,
                    revision: str | None = None) -> Path | None:
    """The repo's weight file already in the local Hugging Face cache (file system only), or ``None``."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - listed in setup.py
        return None
    if cache_dir is None:
        cache_dir = _hub_cache_dir()
    for filename in HUB_FILENAMES:
        found = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir, revision=revision)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def _format_size(n: int | None) -> str:
    if not n:
        return "size unknown"
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def probe_hub(repo_id: str, revision: str | None = None, timeout: float | None = None
              ) -> tuple[str | None, int | None]:
    """One bounded HEAD request for the repo's first weight file: ``(None, size or None)`` when the Hub
    answered (any HTTP status: gated or missing files are reported by the download itself), else
    ``(reason, None)``. Never retries; DNS that hangs is cut off by a thread join."""
    import threading

    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session

    timeout = hub_probe_timeout() if timeout is None else timeout
    url = hf_hub_url(repo_id, HUB_FILENAMES[0], revision=revision)
    result: dict[str, Any] = {}

    def head() -> None:
        try:
            session, headers = get_session(), build_hf_headers()
            try:  # httpx (huggingface_hub >= 1.0) / requests (older)
                response = session.head(url, headers=headers, timeout=timeout, follow_redirects=False)
            except TypeError:
                response = session.head(url, headers=headers, timeout=timeout, allow_redirects=False)
            result["response"] = response
        except Exception as exc:  # noqa: BLE001 - any failure means "not reachable now"
            text = str(exc).splitlines()[0] if str(exc) else ""
            result["error"] = f"{type(exc).__name__}: {text}"

    thread = threading.Thread(target=head, name="vggt-hub-probe", daemon=True)
    thread.start()
    thread.join(2 * timeout + 1.0)
    if thread.is_alive():
        return f"no answer from {url} within {2 * timeout + 1.0:.0f} s", None
    if "error" in result:
        return f"{url}: {result['error']}", None
    response = result["response"]
    size = None
    for key in ("x-linked-size", "content-length"):
        value = response.headers.get(key)
        if value and value.isdigit() and (key == "x-linked-size" or response.status_code < 300):
            size = int(value)
            break
    return None, size


def _unavailable_hub(repo_id: str, cache_dir: str | Path | None, why: str) -> CheckpointUnavailable:
    return CheckpointUnavailable(
        f"checkpoint {repo_id!r} (Hugging Face repo id) is not in the local cache "
        f"({cache_dir or 'default cache'}) and cannot be downloaded now: {why}. Either download it where "
        f"there is network (huggingface-cli download {repo_id}, same HF_HOME/HF_HUB_CACHE), or "
        f"{LOCAL_FILE_HINT}")


def resolve_checkpoint(source: str | Path, cache_dir: str | Path | None = None,
                       revision: str | None = None) -> Path:
    """Local weight file for ``source``: a file, a directory holding one, or a Hub repo id.

    Cheap when the weights are here or cannot be had: a repo id is looked up in the local Hugging Face
    cache first (file system only); if it is not cached, ``HF_HUB_OFFLINE`` or a Hub that does not answer
    one short probe (:func:`probe_hub`, ``HF_HUB_ETAG_TIMEOUT``, default 5 s) raise
    :class:`CheckpointUnavailable` within seconds, as does a local path that does not exist. Otherwise
    the download starts (logged with its size) and takes as long as it takes.
    """
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        for name in LOCAL_PREFERENCE:
            if (path / name).is_file():
                return path / name
        candidates = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
        if len(candidates) == 1:
            return candidates[0]
        raise CheckpointError(
            f"directory {path} holds no unambiguous checkpoint: expected one of {LOCAL_PREFERENCE}, "
            f"found weight files {[p.name for p in candidates]}")
    if not (isinstance(source, str) and _is_hub_id(source) and not path.exists()):
        raise CheckpointUnavailable(
            f"checkpoint not found: {source} (not a file, a directory or a Hub repo id such as "
            f"{NONCOMMERCIAL_REPO}); {LOCAL_FILE_HINT}")
    if cache_dir is None:
        cache_dir = _hub_cache_dir()
    cached = cached_hub_file(source, cache_dir=cache_dir, revision=revision)
    if cached is not None:
        logger.info("checkpoint %s: found in the Hugging Face cache: %s", source, cached)
        return cached
    if _env_true("HF_HUB_OFFLINE"):
        raise _unavailable_hub(source, cache_dir, "HF_HUB_OFFLINE is set (offline mode)")
    why, size = probe_hub(source, revision=revision)
    if why is not None:
        raise _unavailable_hub(source, cache_dir, f"the Hub is not reachable ({why})")
    logger.warning("checkpoint %s is not cached: downloading it from the Hugging Face Hub now (%s) into %s",
                   source, _format_size(size), cache_dir or "the default cache")
    try:
        return download_from_hub(source, cache_dir=cache_dir, revision=revision, local_files_only=False)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}\n(no local file or directory {source!r} exists either; "
                              f"{LOCAL_FILE_HINT})") from exc


def _sniff_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return "safetensors"
    if suffix in (".pt", ".pth", ".bin"):
        return "torch"
    with open(path, "rb") as fh:
        head = fh.read(9)
    if head[:2] == b"PK" or head[:1] == b"\x80":  # zip (torch >= 1.6) or legacy pickle
        return "torch"
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    raise CheckpointError(f"{path}: unknown checkpoint format (expected .safetensors, .pt or .pth)")


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The tensor dict inside a torch checkpoint (plain state dict, or under 'state_dict'/'model')."""
    if isinstance(obj, Mapping) and obj and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in ("state_dict", "model", "model_state_dict"):
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(
            f"{path}: expected a state dict (mapping of names to tensors), got {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: {len(bad)} entries are not tensors, e.g. {bad[:_SHOW]}")
    return dict(obj)


def strip_prefix(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a "module." (DataParallel/DDP) or "model." (wrapper) prefix present on every key."""
    for prefix in ("module.", "model."):
        if state_dict and all(k.startswith(prefix) for k in state_dict):
            logger.info("stripping prefix %r from all %d checkpoint keys", prefix, len(state_dict))
            return {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def read_state_dict(source: str | Path, map_location: str | torch.device = "cpu",
                    cache_dir: str | Path | None = None, revision: str | None = None
                    ) -> tuple[dict[str, torch.Tensor], Path]:
    """Read the weights of ``source`` -> (state dict with any wrapper prefix stripped, resolved file)."""
    path = resolve_checkpoint(source, cache_dir=cache_dir, revision=revision)
    fmt = _sniff_format(path)
    try:
        if fmt == "safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path), device=str(map_location))
        else:
            try:  # mmap avoids a second full copy of a 5 GB file; legacy files cannot be mapped.
                obj = torch.load(path, map_location=map_location, weights_only=True, mmap=True)
            except RuntimeError as exc:
                if "mmap" not in str(exc).lower() and "zip" not in str(exc).lower():
                    raise
                obj = torch.load(path, map_location=map_location, weights_only=True)
            state = _unwrap(obj, path)
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure means a damaged or foreign file
        raise CheckpointError(
            f"cannot read {fmt} checkpoint {path} ({path.stat().st_size} bytes): it is truncated, "
            f"corrupt or not a weight file ({type(exc).__name__}: {str(exc)[:300]})") from exc
    if not state:
        raise CheckpointError(f"{path}: checkpoint holds no tensors")
    return strip_prefix(state), path


def _group_counts(keys: list[str]) -> str:
    counts = Counter(k.split(".", 1)[0] for k in keys)
    return ", ".join(f"{mod}: {n}" for mod, n in sorted(counts.items()))


def describe_mismatch(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> str | None:
    """Readable summary of key/shape differences between a state dict and a model, or ``None`` if they fit."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state_dict.items()}
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [k for k in expected if k in got and expected[k] != got[k]]
    if not (missing or unexpected or shapes):
        return None
    lines = []

    def section(title: str, keys: list[str], fmt) -> None:
        if not keys:
            return
        lines.append(f"  {title}: {len(keys)} ({_group_counts(keys)})")
        lines.extend(f"    {fmt(k)}" for k in keys[:_SHOW])
        if len(keys) > _SHOW:
            lines.append(f"    ... and {len(keys) - _SHOW} more")

    section("missing keys (in the model, not in the checkpoint)", missing, str)
    section("unexpected keys (in the checkpoint, not in the model)", unexpected, str)
    section("shape mismatches", shapes,
            lambda k: f"{k}: checkpoint {list(got[k])} vs model {list(expected[k])}")
    return "\n".join(lines)


def _licence_notice(source: str | Path) -> None:
    text = str(source)
    if text == COMMERCIAL_REPO:
        logger.info("weights %s: VGGT commercial licence (see the model card)", text)
    elif text == NONCOMMERCIAL_REPO:
        logger.warning("weights %s are licensed for NON-COMMERCIAL use only; "
                       "use %s (gated) for commercial use", text, COMMERCIAL_REPO)
    else:
        logger.info("note: the original %s weights are non-commercial; %s allows commercial use",
                    NONCOMMERCIAL_REPO, COMMERCIAL_REPO)


def drop_disabled_heads(state_dict: dict[str, torch.Tensor],
                        model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Remove entries of top-level modules the model has switched off (attribute present but ``None``).

    The official checkpoint carries all four heads; a model built with e.g. ``enable_track=False``
    should still load it strictly for everything it does have.
    """
    disabled = {k.split(".", 1)[0] for k in state_dict if "." in k and hasattr(model, k.split(".", 1)[0])
                and getattr(model, k.split(".", 1)[0]) is None}
    if not disabled:
        return state_dict
    kept = {k: v for k, v in state_dict.items() if k.split(".", 1)[0] not in disabled}
    logger.info("ignoring %d checkpoint tensors of disabled modules %s",
                len(state_dict) - len(kept), sorted(disabled))
    return kept


def load_checkpoint(source: str | Path, model: torch.nn.Module | None = None, config: Any = None,
                    map_location: str | torch.device = "cpu", cache_dir: str | Path | None = None,
                    revision: str | None = None, ignore_disabled_heads: bool = True,
                    licence_source: str | Path | None = None) -> torch.nn.Module:
    """Strictly load weights from ``source`` into ``model`` (or a new ``VGGT(config)``), in eval mode.

    ``source``: a .pt/.pth/.safetensors file, a directory holding model.safetensors / model.pt, or a
    Hub repo id such as "facebook/VGGT-1B". ``config``: a ``VGGTConfig`` or a dict of its fields, used
    only when ``model`` is None (default: the 1B layout). Raises :class:`CheckpointMismatchError`
    with a summary when keys or shapes differ, :class:`CheckpointError`/``FileNotFoundError`` otherwise.
    Weights of heads disabled in the model (``None`` attributes) are skipped unless
    ``ignore_disabled_heads`` is False. ``licence_source``: the name the licence notice is about when
    ``source`` is already a resolved file (default: ``source``).
    """
    state, path = read_state_dict(source, map_location="cpu", cache_dir=cache_dir, revision=revision)
    if model is None:
        from vggt_ros.model.config import VGGTConfig
        from vggt_ros.model.vggt import VGGT

        if isinstance(config, Mapping):
            config = VGGTConfig(**config)
        model = VGGT.empty(config, device=map_location)  # no random init: every entry is overwritten
    if ignore_disabled_heads:
        state = drop_disabled_heads(state, model)
    problem = describe_mismatch(state, model)
    if problem is not None:
        raise CheckpointMismatchError(
            f"checkpoint {path} does not match the model ({type(model).__name__}, strict loading):\n"
            f"{problem}\n"
            "Check that the model config matches the checkpoint (e.g. default 1B vs a smaller config).")
    model.load_state_dict(state, strict=True)
    model.to(map_location)
    model.eval()
    dtypes = Counter(str(v.dtype).replace("torch.", "") for v in state.values())
    numel = sum(v.numel() for v in state.values())
    logger.info("loaded %d tensors (%.1f M values, %s) from %s", len(state), numel / 1e6,
                ", ".join(f"{d}: {n}" for d, n in dtypes.items()), path)
    _licence_notice(source if licence_source is None else licence_source)
    return model
