"""Forward the ``vggt_ros`` Python loggers to a node's rcl logger, so that core warnings reach /rosout.

The core, model, runner and output modules log with Python :mod:`logging`
(``logging.getLogger("vggt_ros.core.pipeline")`` ...); under a ROS node those records would only reach
stderr (Python's last-resort handler, warnings and above). :func:`attach_rcl_logging` adds a handler to
the ``vggt_ros`` logger that passes every record to ``node.get_logger()``: the rcl logger prints it like
the node's own messages and publishes it on /rosout.

    handler = attach_rcl_logging(node)   # e.g. at the end of the node's set-up
    ...
    detach_rcl_logging(handler)           # or handler.detach(); idempotent

Levels map DEBUG/INFO/WARNING/ERROR/CRITICAL -> debug/info/warning/error/fatal (in between: the next
lower one). The message is ``[<python logger name>] <message>`` plus the traceback of ``exc_info``. While
the ``vggt_ros`` logger has no level of its own, attaching sets it to the rcl logger's effective level
(the rcutils severities have Python's numeric values), so that INFO records are created at all when the
node logs INFO; detaching restores it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

ROOT_LOGGER = "vggt_ros"

_LEVELS = ((logging.CRITICAL, "fatal"), (logging.ERROR, "error"), (logging.WARNING, "warning"),
           (logging.INFO, "info"))
_lock = threading.Lock()


def rcl_method(levelno: int) -> str:
    """Name of the rclpy logger method for a Python level number."""
    for level, name in _LEVELS:
        if levelno >= level:
            return name
    return "debug"


class RclLogHandler(logging.Handler):
    """A :class:`logging.Handler` writing records to an rclpy logger (``node.get_logger()``)."""

    def __init__(self, rcl_logger: Any, logger_name: str = ROOT_LOGGER, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.rcl_logger = rcl_logger
        self.logger_name = logger_name
        self.node: Any = None
        self._saved_level: int | None = None
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"[{record.name}] {record.getMessage()}"
            if record.exc_info:
                text += "\n" + self._formatter.formatException(record.exc_info)
            if record.stack_info:
                text += "\n" + self._formatter.formatStack(record.stack_info)
            # One call site per severity: rclpy remembers each call site's severity and refuses a
            # different one from the same line ("Logger severity cannot be changed between calls").
            method = rcl_method(record.levelno)
            if method == "fatal":
                self.rcl_logger.fatal(text)
            elif method == "error":
                self.rcl_logger.error(text)
            elif method == "warning":
                self.rcl_logger.warning(text)
            elif method == "info":
                self.rcl_logger.info(text)
            else:
                self.rcl_logger.debug(text)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)

    @property
    def attached(self) -> bool:
        return self in logging.getLogger(self.logger_name).handlers

    def detach(self) -> None:
        """Remove this handler from its Python logger (and restore that logger's level); idempotent."""
        detach_rcl_logging(self)


def attach_rcl_logging(node: Any, logger_name: str = ROOT_LOGGER) -> RclLogHandler:
    """Forward records of the ``logger_name`` hierarchy (default ``vggt_ros``) to ``node.get_logger()``.

    Returns the handler (give it to :func:`detach_rcl_logging`). Attaching the same node twice returns
    the handler already attached, so no record is forwarded twice.
    """
    py_logger = logging.getLogger(logger_name)
    with _lock:
        for existing in py_logger.handlers:
            if isinstance(existing, RclLogHandler) and existing.node is node:
                return existing
        rcl_logger = node.get_logger()
        handler = RclLogHandler(rcl_logger, logger_name)
        handler.node = node
        if py_logger.level == logging.NOTSET:
            try:
                effective = int(rcl_logger.get_effective_level())
            except Exception:  # noqa: BLE001 - a stand-in logger without levels: let everything through
                effective = logging.DEBUG
            handler._saved_level = py_logger.level
            py_logger.setLevel(effective if effective > logging.NOTSET else logging.DEBUG)
        py_logger.addHandler(handler)
        return handler


def detach_rcl_logging(handler: RclLogHandler | None) -> None:
    """Remove a handler :func:`attach_rcl_logging` returned (``None`` or already removed: no-op)."""
    if handler is None:
        return
    py_logger = logging.getLogger(handler.logger_name)
    with _lock:
        if handler not in py_logger.handlers:
            return
        py_logger.removeHandler(handler)
        if handler._saved_level is not None:
            py_logger.setLevel(handler._saved_level)
            handler._saved_level = None
        handler.node = None
