"""The quiet console of scripts/train.py: the project's lines on the terminal, everyone else's output in the log."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

from cluster.console import ConsoleFilter, is_console_line

from ..conftest import ROOT

# a driver after quiet_console: its own records, other libraries' records, Python warnings, plain prints, a
# progress bar, Ray's forwarded worker lines (with colour codes), and bytes written below Python at exit
DRIVER = textwrap.dedent(
    """
    import logging, os, sys, warnings
    sys.path.insert(0, {root!r})
    from cluster.console import quiet_console
    terminal = quiet_console(__import__("pathlib").Path(sys.argv[1]))
    print("log at", sys.argv[1], file=terminal)
    logging.getLogger("cluster.trainer").info("step 1/2 reward 0.5")
    logging.getLogger("spatialthinker").warning("a project warning")
    logging.getLogger("ray").warning("token authentication is recommended")
    logging.getLogger("vllm").warning("Failed to load weights")
    logging.getLogger("deepspeed").error("a library error")
    warnings.warn("something is deprecated", DeprecationWarning, stacklevel=1)
    print("DeepSpeed build info")
    sys.stderr.write("Loading weights: 10%\\rLoading weights: 100%\\n")
    sys.stderr.write("\\x1b[36m(RolloutWorker pid=12)\\x1b[0m actors.rollout WARNING worker lost its engine\\n")
    sys.stderr.write("\\x1b[36m(RolloutWorker pid=12)\\x1b[0m WARNING 12-03 [loader.py:1] Failed to load weights\\n")
    sys.stdout.write("(LearnerWorker pid=13, ip=10.0.0.2) actors.learner ERROR rank 1 ran out of memory\\n")
    sys.stdout.flush()
    os.write(2, b"nanobind: leaked 3 instances!\\n")
    """
)


def test_terminal_keeps_project_lines_and_errors_the_log_keeps_everything(tmp_path):
    log_path = tmp_path / "run" / "train.log"
    p = subprocess.run(
        [sys.executable, "-c", DRIVER.format(root=str(ROOT)), str(log_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    terminal = p.stdout + p.stderr
    shown = [
        "log at",
        "step 1/2 reward 0.5",
        "a project warning",
        "a library error",
        "worker lost its engine",
        "rank 1 ran out of memory",
    ]
    hidden = [
        "token authentication",
        "Failed to load weights",
        "deprecated",
        "DeepSpeed build info",
        "Loading weights",
        "nanobind",
    ]
    for text in shown:
        assert text in terminal, (text, terminal)
    for text in hidden:
        assert text not in terminal, (text, terminal)
    logged = log_path.read_text()
    for text in shown[1:] + hidden:
        assert text in logged, (text, logged)


def test_console_filter_and_worker_lines():
    def record(name, level):
        return logging.LogRecord(name, level, __file__, 1, "m", None, None)

    keep = ConsoleFilter()
    assert keep.filter(record("cluster.trainer", logging.INFO)) and keep.filter(record("evaluation.x", logging.INFO))
    assert keep.filter(record("torch", logging.ERROR))
    assert not keep.filter(record("vllm", logging.WARNING)) and not keep.filter(record("clusterfoo", logging.INFO))
    assert is_console_line("(ReferencePolicy pid=7) rewards.spatial ERROR reward: unexpected error")
    assert not is_console_line("(ReferencePolicy pid=7) rewards.spatial INFO fine")
    assert not is_console_line("actors.rollout WARNING not from a worker")
    assert not is_console_line("(RolloutWorker pid=7) transformers WARNING noise")
