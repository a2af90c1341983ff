#!/usr/bin/env python
"""Add or remove rollout workers of a running training job, show its status, or stop it.

    python scripts/scale_rollout.py --run runs/spatialthinker-cpu --workers 3   # the run's output folder
    python scripts/scale_rollout.py --run spatialthinker-cpu-1a2b3c4d --status  # or its run id
    python scripts/scale_rollout.py --run runs/my-run --stop                    # checkpoint and stop after this step

``--run`` is the run's output folder (its ``run.json`` names the run id, namespace and Ray address) or its run id,
or a prefix of exactly one running run id. The driver applies a change before its next step; a request beyond
``rollout.max_workers`` is capped and the cap is printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import ray  # noqa: E402
from ray.exceptions import AuthenticationError  # noqa: E402

from cluster.control import PREFIX, control_name, read_run_file  # noqa: E402

log = logging.getLogger("scale_rollout")


class UsageError(Exception):
    pass


def find_control(run: str, address: str | None, namespace: str | None):
    info = read_run_file(Path(run)) if Path(run).is_dir() else None
    if info:
        run, namespace, address = info["run_id"], namespace or info["namespace"], address or info["ray_address"]
    address = address or os.environ.get("RAY_ADDRESS") or "auto"
    host, _, port = address.rpartition(":")
    if host and port.isdigit():  # Ray would retry an absent GCS for minutes: probe it first
        try:
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as e:
            raise UsageError(f"cannot reach a Ray cluster at {address!r}: {e.strerror or e}") from None
    try:
        ray.init(address=address, namespace=namespace or "spatialthinker", log_to_driver=False, logging_level="ERROR")
    except (ConnectionError, RuntimeError, AuthenticationError) as e:
        # a cluster with token authentication refuses a client without its token as a failed connection
        raise UsageError(
            f"cannot reach a Ray cluster at {address!r}: {str(e).splitlines()[0]} (if the cluster has token "
            "authentication, this client needs its token: RAY_AUTH_MODE=token and RAY_AUTH_TOKEN_PATH or "
            "RAY_AUTH_TOKEN, as for `ray start`)"
        ) from None
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(PREFIX)]
    if control_name(run) in names:
        return ray.get_actor(control_name(run), namespace=namespace or "spatialthinker")
    matches = [n for n in names if n[len(PREFIX) :].startswith(run)]
    if len(matches) == 1:
        return ray.get_actor(matches[0], namespace=namespace or "spatialthinker")
    running = ", ".join(n[len(PREFIX) :] for n in names) or "none"
    if not matches:
        raise UsageError(f"no running job {run!r}; running run ids: {running}")
    raise UsageError(f"{run!r} matches several running jobs ({running}); give the full run id or the output folder")


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="output folder or run id (or a unique prefix of one)")
    ap.add_argument("--address", default=None, help="Ray address (default: run.json, RAY_ADDRESS, auto)")
    ap.add_argument("--namespace", default=None)
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--workers", type=int)
    group.add_argument("--status", action="store_true")
    group.add_argument("--stop", action="store_true")
    args = ap.parse_args(argv)
    try:
        if args.workers is not None and args.workers < 1:
            raise UsageError("--workers must be >= 1")
        control = find_control(args.run, args.address, args.namespace)
        if args.workers is not None:
            result = ray.get(control.set_rollout_workers.remote(args.workers))
            if result["note"]:
                log.warning("requested %d rollout workers: %s", args.workers, result["note"])
        if args.stop:
            ray.get(control.request_stop.remote())
        print(json.dumps(ray.get(control.status.remote()), indent=2))
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
