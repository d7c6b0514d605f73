"""``diagnostic_msgs/DiagnosticStatus`` and ``DiagnosticArray`` fields.

Why here: the node and the bag writer report the same key/value diagnostics, stringified the same
way (floats with 6 significant digits, bools as true/false).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vggt_ros.messages.stamps import Fields, header_fields

DIAGNOSTIC_LEVELS = {"OK": 0, "WARN": 1, "ERROR": 2, "STALE": 3}


def _format_value(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return str(v)


def diagnostic_status_fields(
    name: str,
    values: Mapping[str, Any],
    level: int | str = 0,
    message: str = "",
    hardware_id: str = "",
) -> Fields:
    """``diagnostic_msgs/DiagnosticStatus`` fields; ``level`` 0-3 or OK/WARN/ERROR/STALE; values are
    stringified (floats with 6 significant digits, bools as true/false)."""
    if isinstance(level, str):
        if level.upper() not in DIAGNOSTIC_LEVELS:
            raise ValueError(f"diagnostic level {level!r} not in {list(DIAGNOSTIC_LEVELS)}")
        level = DIAGNOSTIC_LEVELS[level.upper()]
    if int(level) not in DIAGNOSTIC_LEVELS.values():
        raise ValueError(f"diagnostic level {level} not in 0..3")
    return {
        "level": int(level),
        "name": str(name),
        "message": str(message),
        "hardware_id": str(hardware_id),
        "values": [{"key": str(k), "value": _format_value(v)} for k, v in values.items()],
    }


def diagnostic_array_fields(statuses: Sequence[Fields], stamp_ns: int, frame_id: str = "") -> Fields:
    """``diagnostic_msgs/DiagnosticArray`` fields from status dicts (:func:`diagnostic_status_fields`)."""
    return {"header": header_fields(stamp_ns, frame_id), "status": list(statuses)}
