"""Fields dicts -> real messages, and any message -> fields dict.

Two thin builders turn a fields dict (see :mod:`vggt_ros.messages`) into a real message:

* :func:`to_rclpy` for rclpy message classes (sequences become ``array.array`` of the right type
  code, fixed arrays numpy arrays of the right dtype, so ``ROS_PYTHON_CHECK_FIELDS=1`` passes and
  large payloads are copied once, never iterated in Python);
* :func:`to_rosbags` for ``rosbags`` typestore dataclasses (numpy arrays for numeric sequences),
  which the bag tools serialise to CDR.

:func:`msg_to_fields` turns any message (rclpy, rosbags, mcap_ros2) back into a fields dict (so
``to_rosbags(ts, t, msg_to_fields(rclpy_msg))`` converts between flavours).

Fields may share memory with the arrays they were made from (e.g. ``depth_image_fields`` views the
depth array): :func:`to_rclpy` copies, rosbags messages keep the view, so serialise them before
mutating the inputs. Nothing here imports ROS: the rclpy classes are imported by name on demand.
"""

from __future__ import annotations

import array
import dataclasses
import importlib
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

_RCLPY_TYPECODES = {
    "float": "f", "float32": "f", "double": "d", "float64": "d",
    "int8": "b", "uint8": "B", "int16": "h", "uint16": "H",
    "int32": "i", "uint32": "I", "int64": "q", "uint64": "Q",
}
_NUMPY_DTYPES = {
    "float": np.float32, "float32": np.float32, "double": np.float64, "float64": np.float64,
    "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16,
    "int32": np.int32, "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64,
    "byte": np.uint8, "octet": np.uint8, "char": np.uint8, "bool": np.bool_, "boolean": np.bool_,
}
_INT_TYPES = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "char", "byte"}
_FLOAT_TYPES = {"float", "double", "float32", "float64"}
_SEQ_RE = re.compile(r"^sequence<(.+?)(?:,\s*\d+)?>$")
_ARR_RE = re.compile(r"^(.+)\[(\d+)\]$")


def _rclpy_class(typename: str) -> type:
    pkg, name = typename.split("/")[0], typename.split("/")[-1]
    return getattr(importlib.import_module(f"{pkg}.msg"), name)


def _rclpy_scalar(t: str, value: Any) -> Any:
    if t == "octet":
        return value if isinstance(value, (bytes, bytearray)) else bytes([int(value)])
    if t == "boolean":
        return bool(value)
    if t in _FLOAT_TYPES:
        return float(value)
    if t in _INT_TYPES:
        return int(value)
    if t.startswith(("string", "wstring")):
        return str(value)
    raise TypeError(f"unknown rclpy field type {t!r}")


def _rclpy_value(t: str, value: Any) -> Any:
    m = _SEQ_RE.match(t)
    a = None if m else _ARR_RE.match(t)
    if m or a:
        elem = (m or a).group(1)
        if "/" in elem:
            cls = _rclpy_class(elem)
            return [v if isinstance(v, cls) else to_rclpy(cls, v) for v in value]
        if elem in _RCLPY_TYPECODES:
            arr = np.ascontiguousarray(np.asarray(value), dtype=_NUMPY_DTYPES[elem]).reshape(-1)
            if a:  # fixed arrays are stored as numpy arrays by rclpy
                if arr.size != int(a.group(2)):
                    raise ValueError(f"field of type {t} needs {a.group(2)} values, got {arr.size}")
                return arr.copy()
            out = array.array(_RCLPY_TYPECODES[elem])
            out.frombytes(memoryview(arr).cast("B"))  # one copy, no intermediate bytes object
            return out
        return [_rclpy_scalar(elem, v) for v in value]
    if "/" in t:
        cls = _rclpy_class(t)
        return value if isinstance(value, cls) else to_rclpy(cls, value)
    return _rclpy_scalar(t, value)


def to_rclpy(msg_cls: type, fields: Mapping[str, Any]) -> Any:
    """Build an rclpy message of ``msg_cls`` from a fields dict (nested dicts for sub-messages).

    Missing fields keep the message defaults; unknown names raise ``KeyError``. Works with
    ``ROS_PYTHON_CHECK_FIELDS=1``: numeric sequences become ``array.array``, fixed arrays numpy arrays.
    """
    types = msg_cls.get_fields_and_field_types()
    unknown = [name for name in fields if name not in types]
    if unknown:
        raise KeyError(f"{msg_cls.__name__} has no field(s) {unknown} (fields: {list(types)})")
    # Assign through the setters after default construction: the generated __init__ copies every
    # sequence passed as a keyword (array.array(...)), the setters keep an array.array as is when
    # fields are checked and copy it once otherwise.
    msg = msg_cls()
    for name, value in fields.items():
        setattr(msg, name, _rclpy_value(types[name], value))
    return msg


def _rosbags_scalar(t: str, value: Any) -> Any:
    if t == "string":
        return str(value)
    if t == "bool":
        return bool(value)
    if t in _FLOAT_TYPES:
        return float(value)
    if isinstance(value, (bytes, bytearray)):
        return value[0]
    return int(value)


def _rosbags_value(typestore: Any, node: tuple, value: Any) -> Any:
    kind, detail = int(node[0]), node[1]
    if kind == 1:  # BASE
        return _rosbags_scalar(detail[0], value)
    if kind == 2:  # NAME
        return value if not isinstance(value, Mapping) else to_rosbags(typestore, detail, value)
    # ARRAY (3) / SEQUENCE (4): detail = (element node, count)
    elem, count = detail
    ekind, edetail = int(elem[0]), elem[1]
    if ekind == 2:
        vals = [to_rosbags(typestore, edetail, v) if isinstance(v, Mapping) else v for v in value]
    elif edetail[0] == "string":
        vals = [str(v) for v in value]
    else:
        vals = np.ascontiguousarray(np.asarray(value), dtype=_NUMPY_DTYPES[edetail[0]]).reshape(-1)
        if not vals.flags.writeable:
            vals = vals.copy()
    if kind == 3 and len(vals) != count:
        raise ValueError(f"fixed array needs {count} values, got {len(vals)}")
    return vals


def _rosbags_default(typestore: Any, node: tuple) -> Any:
    kind, detail = int(node[0]), node[1]
    if kind == 1:
        t = detail[0]
        return "" if t == "string" else False if t == "bool" else 0.0 if t in _FLOAT_TYPES else 0
    if kind == 2:
        return to_rosbags(typestore, detail, {})
    elem, count = detail
    ekind, edetail = int(elem[0]), elem[1]
    n = count if kind == 3 else 0
    if ekind == 2 or edetail[0] == "string":
        return [_rosbags_default(typestore, elem) for _ in range(n)]
    return np.zeros(n, dtype=_NUMPY_DTYPES[edetail[0]])


def to_rosbags(typestore: Any, msgtype: str, fields: Mapping[str, Any]) -> Any:
    """Build a ``rosbags`` message dataclass of ``msgtype`` (e.g. ``'sensor_msgs/msg/Image'``) from a
    fields dict; missing fields get ROS defaults (zeros, empty), unknown names raise ``KeyError``."""
    if msgtype not in typestore.types:
        raise KeyError(f"message type {msgtype!r} is not in the typestore (register_custom_types?)")
    cls = typestore.types[msgtype]
    _, fdefs = typestore.fielddefs[msgtype]
    names = {name for name, _ in fdefs}
    unknown = set(fields) - names
    if unknown:
        raise KeyError(f"{msgtype} has no field(s) {sorted(unknown)} (fields: {[n for n, _ in fdefs]})")
    kwargs = {}
    for name, node in fdefs:
        kwargs[name] = (_rosbags_value(typestore, node, fields[name]) if name in fields
                        else _rosbags_default(typestore, node))
    return cls(**kwargs)


def _field_names(msg: Any) -> list[str] | None:
    if hasattr(msg, "get_fields_and_field_types"):
        return list(msg.get_fields_and_field_types())
    if dataclasses.is_dataclass(msg) and not isinstance(msg, type):
        # rosbags dataclasses also carry the constants (upper case) and __msgtype__ as fields; ROS
        # field names are lower case.
        names = [f.name for f in dataclasses.fields(msg)]
        return [n for n in names if n == n.lower() and not n.startswith("_")]
    if hasattr(msg, "__slots__") and not isinstance(msg, (str, bytes)):
        return [s.lstrip("_") for s in msg.__slots__ if s not in ("_check_fields",)]
    if hasattr(msg, "__dict__") and not isinstance(msg, type):
        return [k for k in vars(msg) if not k.startswith("_")]
    return None


def msg_to_fields(msg: Any) -> Any:
    """Any message (rclpy, rosbags, mcap_ros2) -> fields dict: numeric sequences as numpy arrays
    (bytes-like as uint8), message sequences as lists of dicts, 1-byte ``bytes`` (rclpy octet) as int."""
    if isinstance(msg, np.ndarray):
        return msg
    if isinstance(msg, array.array):
        return np.array(msg)
    if isinstance(msg, (bytes, bytearray)):
        return msg[0] if len(msg) == 1 else np.frombuffer(msg, dtype=np.uint8).copy()
    if isinstance(msg, np.generic):
        return msg.item()
    if isinstance(msg, (str, int, float, bool)) or msg is None:
        return msg
    if isinstance(msg, (list, tuple)):
        items = [msg_to_fields(v) for v in msg]
        if items and all(isinstance(v, dict) for v in items):
            return items
        if items and all(isinstance(v, str) for v in items):
            return items
        return np.asarray(items) if items else np.zeros(0)
    names = _field_names(msg)
    if names is None:
        raise TypeError(f"cannot convert {type(msg).__name__} to fields")
    return {name: msg_to_fields(getattr(msg, name)) for name in names}
