"""A quiet console for the training driver.

The terminal shows the project's own log lines (the driver's, and warnings or errors the actors log in their Ray
workers) and any library's errors; everything else -- other libraries' logs and warnings, progress bars, Ray's
forwarded worker output, messages written below Python (C/C++ extensions, at exit) -- goes to a log file in the run
folder, together with a copy of what the terminal shows.

How: file descriptors 1 and 2 point at the log file, so output from any layer lands there; ``sys.stdout`` and
``sys.stderr`` become :class:`_Tee` objects that write to the file and pass the lines Ray forwards from a worker
through to the terminal when they carry a project warning or error (workers format those records as
:data:`actors.logs.WORKER_LOG_FORMAT`); logging gets one handler for the file and one, filtered, for the terminal.
"""

from __future__ import annotations

import io
import logging
import os
import re
import sys
from pathlib import Path
from typing import TextIO

from actors.logs import PROJECT_LOGGERS

DRIVER_LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
"""Log line format of the driver (terminal and file)."""

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_PROJECT = "|".join(re.escape(name) for name in PROJECT_LOGGERS)
_WORKER_PROJECT_LINE = re.compile(
    rf"^\([^)]*pid=[^)]*\) (?:{_PROJECT})(?:\.\w+)* (?:WARNING|ERROR|CRITICAL) "
)  # Ray's prefix "(ActorName pid=N[, ip=...])", then a project record as WORKER_LOG_FORMAT writes it


def is_project_logger(name: str) -> bool:
    """True for the project's loggers (``cluster.trainer``, ``spatialthinker``, ...)."""
    return name.split(".", 1)[0] in PROJECT_LOGGERS


class ConsoleFilter(logging.Filter):
    """The terminal's share of the driver's log records: the project's at the handler's level, anyone's errors."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.ERROR or is_project_logger(record.name)


def is_console_line(line: str) -> bool:
    """Whether a line written to ``sys.stdout``/``sys.stderr`` also goes to the terminal: a line Ray forwards from a
    worker that holds a project warning or error."""
    return _WORKER_PROJECT_LINE.match(_ANSI.sub("", line)) is not None


class _Tee(io.TextIOBase):
    """``sys.stdout`` / ``sys.stderr`` of a quiet driver: every write to the log file, whole lines that pass
    :func:`is_console_line` to the terminal too."""

    def __init__(self, log: TextIO, console: TextIO):
        super().__init__()
        self.log, self.console = log, console
        self.pending = ""

    def write(self, text: str) -> int:
        self.log.write(text)
        self.pending += text
        if "\n" in self.pending:
            *lines, self.pending = self.pending.split("\n")
            shown = [line for line in lines if is_console_line(line)]
            if shown:
                self.console.write("\n".join(shown) + "\n")
        if len(self.pending) > 65536:  # a progress bar redrawn with \r: never a console line
            self.pending = ""
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        self.console.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False  # progress bars and colours are for terminals: the file gets plain text

    def fileno(self) -> int:
        return self.log.fileno()

    @property
    def encoding(self) -> str:
        return self.log.encoding


def quiet_console(log_path: Path, level: int = logging.INFO) -> TextIO:
    """Send this process's output to ``log_path`` (appended) and keep the project's lines on the terminal.

    Returns the terminal stream (for lines a script prints itself). Call it before the heavy imports (torch,
    vLLM, DeepSpeed, Ray), so their messages at import are caught too.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    console = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding="utf-8", errors="replace")
    log = open(log_path, "a", buffering=1, encoding="utf-8", errors="replace")  # noqa: SIM115 - lives with the process
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = _Tee(log, console)
    sys.stderr = _Tee(log, console)
    logging.captureWarnings(True)  # Python warnings become records of the "py.warnings" logger: file only
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = logging.Formatter(DRIVER_LOG_FORMAT)
    to_file = logging.StreamHandler(log)
    to_file.setFormatter(formatter)
    to_console = logging.StreamHandler(console)
    to_console.setFormatter(formatter)
    to_console.addFilter(ConsoleFilter())
    root.addHandler(to_file)
    root.addHandler(to_console)
    root.setLevel(level)
    return console


__all__ = ["DRIVER_LOG_FORMAT", "ConsoleFilter", "is_console_line", "is_project_logger", "quiet_console"]
