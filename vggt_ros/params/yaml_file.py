"""ROS 2 parameter files: read one as rcl would for our node, and generate ``config/vggt.yaml``.

Why the generated file's top key is ``/**``: rcl applies a section only to the nodes whose fully
qualified name matches its key, and a bare ``vggt_node:`` key means ``/vggt_node``, so under the
launch file's namespace (``/vggt/vggt_node``) such a file was silently ignored. ``/**`` matches any
node in any namespace. :func:`load_params_yaml` applies the same matching rules, so the replay reads
a file exactly as the launched node would.

Regenerate the committed file after changing the table (``--check`` exits 1 when it is stale)::

    python3 -m vggt_ros.params.yaml_file [--check] [--path config/vggt.yaml]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vggt_ros.params.table import DEFAULT_NAMESPACE, DEFAULT_NODE_NAME, PARAMS, defaults

DEFAULT_YAML_PATH = Path(__file__).resolve().parents[2] / "config" / "vggt.yaml"
TOP_KEY = "/**"

_GROUP_TITLES = {"lifecycle": "Lifecycle", "model": "Model", "frames": "Frames and TF",
                 "topics": "Topics and QoS", "publish": "Publishers and rates",
                 "pipeline": "Streaming core (vggt_ros.core.config.PipelineConfig)"}


# ---------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------


def node_key_matches(key: str, node_fqn: str) -> bool:
    """Whether a parameter file's node key applies to the node ``node_fqn``, by rcl's rules.

    A key without a leading slash gets one (``vggt_node`` is ``/vggt_node``); then ``/**`` matches
    any number of namespace levels (``(/\\w+)*``) and ``/*`` exactly one (``/\\w+``); the whole
    fully qualified name must match (as rclpy's ``_populate_node_parameters_from_rcl_params``).
    """
    name = key if key.startswith("/") else "/" + key
    pieces = re.split(r"(/\*\*|/\*)", name)
    regex = "".join({"/**": r"(/\w+)*", "/*": r"(/\w+)"}.get(p, re.escape(p)) for p in pieces)
    return re.fullmatch(regex, node_fqn, flags=re.ASCII) is not None


def _node_sections(doc: Mapping[str, Any], prefix: str, path: Any) -> list[tuple[str, Mapping[str, Any]]]:
    # rcl nests namespaces as keys until a 'ros__parameters' mapping ("/ns: {node: {ros__parameters}}").
    out = []
    for key, section in doc.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if not isinstance(section, Mapping):
            raise ValueError(f"{path}: section {name!r} has no 'ros__parameters' mapping")
        if "ros__parameters" in section:
            params = section["ros__parameters"]
            if params is not None and not isinstance(params, Mapping):
                raise ValueError(f"{path}: section {name!r} has no 'ros__parameters' mapping")
            out.append((name, params or {}))
        else:
            out.extend(_node_sections(section, name, path))
    return out


def _flatten(prefix: str, d: Mapping[str, Any], out: dict[str, Any]) -> None:
    # ROS nests dotted parameter names in YAML ("a: {b: 1}" is parameter "a.b").
    for key, value in d.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            _flatten(name, value, out)
        else:
            out[name] = value


def load_params_yaml(path: str | os.PathLike[str], node_name: str = DEFAULT_NODE_NAME, *,
                     node_fqn: str | None = None) -> dict[str, Any]:
    """Read a ROS 2 parameter file into the flat dict the node ``node_fqn`` would receive.

    ``node_fqn`` defaults to ``DEFAULT_NAMESPACE/node_name`` (``/vggt/vggt_node``, as launched).
    Every section whose key matches it (:func:`node_key_matches`) applies, in file order, later ones
    overriding earlier ones, as rclpy does. Values are not validated here (see
    :func:`vggt_ros.params.validation.validate_params`); a file without a matching section raises
    ``ValueError``.
    """
    import yaml

    fqn = node_fqn or f"{DEFAULT_NAMESPACE.rstrip('/')}/{node_name}"
    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh) or {}
    if not isinstance(doc, Mapping):
        raise ValueError(f"{path}: a ROS parameter file must map node names to sections, "
                         f"got {type(doc).__name__}")
    sections = _node_sections(doc, "", path)
    matching = [params for key, params in sections if node_key_matches(key, fqn)]
    if not matching:
        raise ValueError(f"{path}: no parameters for node {fqn!r} (sections: {[k for k, _ in sections]}; "
                         f"a key without a namespace such as {node_name!r} only applies to "
                         f"'/{node_name}', use '/**' or '/**/{node_name}')")
    out: dict[str, Any] = {}
    for params in matching:
        _flatten("", params, out)
    return out


# ---------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------


def _yaml_scalar(value: Any) -> str:
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    if text.endswith("..."):
        text = text[:-3].strip()
    return text


def params_yaml_text(values: Mapping[str, Any] | None = None) -> str:
    """The documented ROS parameter YAML of the table (defaults, or ``values`` where given)."""
    values = dict(defaults(), **(values or {}))
    lines = ["# Parameters of the vggt_ros node, generated from vggt_ros/params/table.py by",
             "# `python3 -m vggt_ros.params.yaml_file` (each parameter documented with its allowed values).",
             "# Invalid values stop the node at start-up. '/**' applies to the node in any namespace.",
             f"{TOP_KEY}:", "  ros__parameters:"]
    for group, title in _GROUP_TITLES.items():
        lines.append(f"    # --- {title} " + "-" * max(3, 90 - len(title)))
        for p in PARAMS:
            if p.group != group:
                continue
            for row in textwrap.wrap(f"{p.description}. Allowed: {p.allowed()}.", 100):
                lines.append(f"    # {row}")
            lines.append(f"    {p.name}: {_yaml_scalar(values[p.name])}")
    return "\n".join(lines) + "\n"


def write_default_yaml(path: str | os.PathLike[str] = DEFAULT_YAML_PATH) -> None:
    """Write the table's defaults as the documented parameter file."""
    Path(path).write_text(params_yaml_text(), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Regenerate config/vggt.yaml from the parameter table.")
    parser.add_argument("--check", action="store_true", help="exit 1 if the file differs, write nothing")
    parser.add_argument("--path", default=str(DEFAULT_YAML_PATH), help="the YAML file (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.check:
        current = Path(args.path).read_text(encoding="utf-8") if Path(args.path).exists() else None
        if current != params_yaml_text():
            print(f"{args.path} is stale: run python3 -m vggt_ros.params.yaml_file", file=sys.stderr)
            return 1
        return 0
    write_default_yaml(args.path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
