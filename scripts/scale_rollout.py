#!/usr/bin/env python
"""Add or remove rollout workers of a running training job.

    python scripts/scale_rollout.py --run spatialthinker-cpu --workers 3
    python scripts/scale_rollout.py --run my-run --status
    python scripts/scale_rollout.py --run my-run --stop      # checkpoint and stop after this step

Connects to the cluster at RAY_ADDRESS (or --address) and talks to the
job's named control actor; the driver applies the change before its next
step.  --run is the run name (default: the output dir's folder name).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True)
    ap.add_argument("--address", default=os.environ.get("RAY_ADDRESS", "auto"))
    ap.add_argument("--namespace", default="spatialthinker")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--workers", type=int)
    g.add_argument("--status", action="store_true")
    g.add_argument("--stop", action="store_true")
    a = ap.parse_args(argv)
    import ray

    from cluster.control import control_name

    ray.init(address=a.address, namespace=a.namespace, log_to_driver=False)
    try:
        ctl = ray.get_actor(control_name(a.run))
    except ValueError:
        print(f"error: no running job named {a.run!r} in namespace {a.namespace!r}", file=sys.stderr)
        return 2
    if a.workers is not None:
        if a.workers < 1:
            print("error: --workers must be >= 1", file=sys.stderr)
            return 2
        ray.get(ctl.set_rollout_workers.remote(a.workers))
    if a.stop:
        ray.get(ctl.request_stop.remote())
    print(json.dumps(ray.get(ctl.status.remote()), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
