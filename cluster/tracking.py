"""MLflow tracking that never takes training down.

The default is a file store under ``<output_dir>/mlruns``. With a tracking server, the server is checked once at
start with a short timeout (a clear one-line error if it cannot be reached); during training a failed call is
buffered in ``<output_dir>/mlflow_buffer.jsonl`` with one warning, training goes on, and the buffer is replayed in
order once the server answers again.
"""

from __future__ import annotations

import json
import logging
import math
import os
import urllib.error
import urllib.request
from pathlib import Path

# Fail fast instead of MLflow's default minutes of retries; set before mlflow reads them.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")

import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

log = logging.getLogger(__name__)


class TrackingError(RuntimeError):
    """The tracking server cannot be used at start."""


def default_uri(output_dir: str | Path) -> str:
    return Path(output_dir, "mlruns").resolve().as_uri()


def check_server(uri: str, timeout: float = 5.0) -> None:
    """One quick request to an http(s) tracking server; raises :class:`TrackingError` naming the URI."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout).read()
    except urllib.error.HTTPError as e:
        if e.code >= 500:
            raise TrackingError(f"MLflow tracking server {uri} answered HTTP {e.code}") from None
    except (OSError, urllib.error.URLError) as e:
        reason = getattr(e, "reason", e)
        raise TrackingError(
            f"MLflow tracking server {uri} is not reachable ({reason}); start it or set "
            "mlflow_tracking_uri to null for a local file store"
        ) from None


class Tracker:
    """One MLflow run; every call after start-up is buffered on failure instead of raising."""

    def __init__(self, uri: str, experiment: str, run_name: str | None, buffer_file: Path, run_id: str | None = None):
        if uri.startswith("file:") or "://" not in uri:
            # the file store is the embedded default; MLflow 3 asks for an explicit opt-in
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        check_server(uri)
        self.uri, self.buffer_file = uri, Path(buffer_file)
        self.client = MlflowClient(tracking_uri=uri)
        mlflow.set_tracking_uri(uri)
        try:
            exp = self.client.get_experiment_by_name(experiment)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
            if run_id:
                self.run = self.client.get_run(run_id)
                self.client.update_run(run_id, status="RUNNING")
            else:
                self.run = self.client.create_run(exp_id, run_name=run_name)
        except Exception as e:
            raise TrackingError(f"MLflow tracking at {uri} failed at start: {str(e).splitlines()[0]}") from None
        self.run_id = self.run.info.run_id
        self.healthy = True
        self._replay()

    # -- buffered calls --------------------------------------------------------------------------------------------
    def _call(self, kind: str, payload: dict) -> None:
        if self.buffer_file.exists() and not self._replay():
            self._buffer(kind, payload)
            return
        try:
            self._send(kind, payload)
            if not self.healthy:
                log.warning("MLflow tracking at %s is back", self.uri)
            self.healthy = True
        except Exception as e:
            if self.healthy:
                log.warning(
                    "MLflow tracking at %s failed (%s); buffering in %s and training on",
                    self.uri,
                    str(e).splitlines()[0][:200],
                    self.buffer_file,
                )
            self.healthy = False
            self._buffer(kind, payload)

    def _send(self, kind: str, payload: dict) -> None:
        if kind == "metrics":
            step = payload["step"]
            metrics = [mlflow.entities.Metric(k, v, payload["ts"], step) for k, v in payload["values"].items()]
            for i in range(0, len(metrics), 500):
                self.client.log_batch(self.run_id, metrics=metrics[i : i + 500])
        elif kind == "params":
            params = [mlflow.entities.Param(k, v) for k, v in payload["values"].items()]
            for i in range(0, len(params), 90):
                self.client.log_batch(self.run_id, params=params[i : i + 90])
        elif kind == "tags":
            self.client.log_batch(
                self.run_id, tags=[mlflow.entities.RunTag(k, v) for k, v in payload["values"].items()]
            )
        elif kind == "artifact":
            p = Path(payload["path"])
            if p.is_dir():
                self.client.log_artifacts(self.run_id, str(p), payload.get("artifact_path"))
            elif p.exists():
                self.client.log_artifact(self.run_id, str(p), payload.get("artifact_path"))

    def _buffer(self, kind: str, payload: dict) -> None:
        with open(self.buffer_file, "a") as fh:
            fh.write(json.dumps({"kind": kind, **payload}) + "\n")

    def _replay(self) -> bool:
        """Send buffered calls in order; True when the buffer is empty afterwards."""
        if not self.buffer_file.exists():
            return True
        lines = [json.loads(line) for line in self.buffer_file.read_text().splitlines() if line.strip()]
        sent = 0
        try:
            for entry in lines:
                payload = dict(entry)
                self._send(payload.pop("kind"), payload)
                sent += 1
        except Exception:
            rest = lines[sent:]
            tmp = self.buffer_file.with_suffix(".tmp")
            tmp.write_text("".join(json.dumps(entry) + "\n" for entry in rest))
            tmp.replace(self.buffer_file)
            return False
        self.buffer_file.unlink()
        if lines:
            log.info("replayed %d buffered MLflow call(s) to %s", len(lines), self.uri)
        return True

    # -- public ----------------------------------------------------------------------------------------------------
    def log_params(self, params: dict) -> None:
        try:
            existing = self.client.get_run(self.run_id).data.params
        except Exception:
            existing = {}
        clean = {k: ("None" if v is None else str(v))[:500] for k, v in params.items() if k not in existing}
        if clean:
            self._call("params", {"values": clean})

    def log_metrics(self, metrics: dict, step: int, timestamp_ms: int) -> None:
        values = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}
        self._call("metrics", {"values": values, "step": int(step), "ts": int(timestamp_ms)})

    def set_tags(self, tags: dict) -> None:
        self._call("tags", {"values": {k: str(v) for k, v in tags.items()}})

    def log_artifacts(self, path: str, artifact_path: str | None = None) -> None:
        self._call("artifact", {"path": str(path), "artifact_path": artifact_path})

    def last_logged_step(self, key: str) -> int:
        """Largest step logged for ``key`` (0 if none or unknown): redone steps after a resume are not logged twice."""
        try:
            return max((m.step for m in self.client.get_metric_history(self.run_id, key)), default=0)
        except Exception:
            return 0

    def status(self) -> str:
        try:
            return self.client.get_run(self.run_id).info.status
        except Exception:
            return "UNKNOWN"

    def end(self, status: str) -> None:
        """Close the run: FINISHED (completed), KILLED (stopped early or interrupted) or FAILED."""
        self._replay()
        try:
            self.client.set_terminated(self.run_id, status=status)
        except Exception as e:
            log.warning("could not mark MLflow run %s %s: %s", self.run_id, status, str(e).splitlines()[0])
