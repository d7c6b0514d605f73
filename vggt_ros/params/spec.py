"""One parameter's description and the coercion of one value against it.

Why here and not in the core: the bounds and choices written in the table are the only check a value
gets (the node, the replay and :class:`vggt_ros.core.config.PipelineConfig` all coerce through
:meth:`ParamSpec.coerce`), so an error message always names the parameter and its allowed values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", bool: "a boolean", list: "a list"}
_NUMERIC = (int, float, np.integer, np.floating)


@dataclass(frozen=True)
class ParamSpec:
    """One parameter.

    type: ``bool``, ``int``, ``float``, ``str`` or ``list`` (a list of floats, ROS ``double[]``).
    choices: allowed values (strings); pattern: regular expression a string must fully match (so a
    pattern that needs a character also forbids the empty string); low/high: inclusive numeric bounds
    unless ``low_open``/``high_open``; multiple_of: an integer must be a multiple of it; group: section
    in the YAML (``pipeline`` for the :class:`~vggt_ros.core.config.PipelineConfig` fields).
    """

    name: str
    default: Any
    type: type
    description: str
    choices: tuple[str, ...] | None = None
    pattern: str | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    multiple_of: int | None = None
    group: str = "node"

    def allowed(self) -> str:
        """Human-readable allowed range, used in error messages and the YAML comments."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.pattern is not None:
            return f"a string matching the regular expression {self.pattern}"
        if self.type is bool:
            return "true or false"
        if self.type is list:
            return "a list of numbers"
        word = _TYPE_WORDS[self.type]
        if self.multiple_of is not None:
            word = f"a multiple of {self.multiple_of}"
        if self.low is None and self.high is None:
            return "any string" if self.type is str else f"any {word}"
        lo = "-inf" if self.low is None else repr(self.low)
        hi = "inf" if self.high is None else repr(self.high)
        lb = "(" if self.low_open or self.low is None else "["
        rb = ")" if self.high_open or self.high is None else "]"
        return f"{word} in {lb}{lo}, {hi}{rb}"

    def coerce(self, value: Any) -> Any:
        """``value`` converted to this parameter's type and checked against its bounds/choices.

        Accepts what ROS and YAML give (ints for whole floats, "true"/"false" strings for booleans,
        arrays for lists). Raises ``ValueError`` naming the parameter, the value and what is allowed.
        """

        def bad(why: str) -> ValueError:
            return ValueError(f"parameter {self.name!r}: {why} (got {value!r}; allowed: {self.allowed()})")

        if self.type is bool:
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            raise bad("expected a boolean")
        if self.type is str:
            if not isinstance(value, str):
                raise bad("expected a string")
            if self.choices is not None and value not in self.choices:
                raise bad("not an allowed value")
            if self.pattern is not None and not re.fullmatch(self.pattern, value):
                raise bad("must not be empty" if not value else "malformed")
            return value
        if self.type is list:
            if value is None:
                return []
            try:
                arr = np.asarray(value, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError):
                raise bad("expected a list of numbers") from None
            if not np.all(np.isfinite(arr)):
                raise bad("expected finite numbers")
            return [float(v) for v in arr]
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, _NUMERIC):
            raise bad(f"expected {_TYPE_WORDS[self.type]}")
        if not math.isfinite(float(value)):
            raise bad(f"expected a finite {'integer' if self.type is int else 'number'}")
        if self.type is int:
            if float(value) != int(value):
                raise bad("expected an integer")
            value = int(value)
            if self.multiple_of is not None and value % self.multiple_of:
                raise bad(f"not a multiple of {self.multiple_of}")
        else:
            value = float(value)
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise bad("out of range")
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise bad("out of range")
        return value
