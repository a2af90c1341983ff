import os
import subprocess
import sys

import pytest

from actors.common import pin_cores
from actors.settings import LearnerSettings, RolloutSettings, parse_cpu_list


@pytest.mark.parametrize(
    "text, cores",
    [("", []), ("0", [0]), ("0-3", [0, 1, 2, 3]), ("0,2,4-5", [0, 2, 4, 5]), (" 1 , 1-2 ", [1, 2])],
)
def test_parse_cpu_list(text, cores):
    assert parse_cpu_list(text) == cores


@pytest.mark.parametrize("text", ["a", "3-1", "-1", "0-", "1.5"])
def test_bad_cpu_list_is_a_one_line_error_naming_the_key(text):
    with pytest.raises(ValueError, match=r"^rollout\.cpu_cores: .*'") as e:
        RolloutSettings(cpu_cores=text)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"^learner\.cpu_cores"):
        LearnerSettings(cpu_cores=text)


def test_pin_cores_pins_this_process_and_its_children():
    """In a child interpreter (the test process keeps its cores): the affinity is set and a process it starts
    afterwards (as vLLM's engine core is) inherits it."""
    core = min(os.sched_getaffinity(0))
    code = (
        "import os, subprocess, sys\n"
        "from actors.common import pin_cores\n"
        f"print(pin_cores('{core}'), sorted(os.sched_getaffinity(0)))\n"
        "print(subprocess.check_output([sys.executable, '-c', 'import os; print(sorted(os.sched_getaffinity(0)))'],"
        " text=True).strip())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == f"[{core}] [{core}]"
    assert out[1] == f"[{core}]"


def test_pin_cores_refuses_cores_this_node_lacks(monkeypatch):
    monkeypatch.setattr("actors.common.node_ip", lambda: "10.0.0.1")
    before = os.sched_getaffinity(0)
    with pytest.raises(RuntimeError, match=r"cpu_cores '4096': cores \[4096\] are not available .* on 10\.0\.0\.1"):
        pin_cores("4096")
    assert os.sched_getaffinity(0) == before
