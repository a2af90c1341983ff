"""How actor processes log, so the driver can tell the project's lines from other libraries' (no heavy imports:
the driver's quiet console, :mod:`cluster.console`, reads these before torch or Ray are loaded)."""

from __future__ import annotations

import logging

PROJECT_LOGGERS = ("spatialthinker", "cluster", "actors", "rewards", "datagen", "evaluation")
"""Top-level logger names of the project (the driver's quiet console keeps their lines on the terminal)."""

WORKER_LOG_FORMAT = "%(name)s %(levelname)s %(message)s"
"""Warnings and errors of an actor process, as Ray forwards them to the driver (which picks the project's out by
logger name)."""


def setup_worker_logging() -> None:
    """Warnings and errors logged with their logger name (:data:`WORKER_LOG_FORMAT`), unless the process has
    configured logging already (a script, a test run)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format=WORKER_LOG_FORMAT)
