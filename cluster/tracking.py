"""MLflow tracking (file store by default)."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

log = logging.getLogger(__name__)


def default_uri(output_dir: str) -> str:
    return Path(output_dir, "mlruns").resolve().as_uri()


class Tracker:
    def __init__(self, uri: str, experiment: str, run_name: str | None, run_id: str | None = None, enabled: bool = True):
        self.enabled = enabled
        self.run_id = run_id
        if not enabled:
            return
        if uri.startswith("file:") or "://" not in uri:
            # the file store is the embedded default; MLflow 3 asks for an explicit opt-in
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        import mlflow

        self.mlflow = mlflow
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment)
        run = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name=run_name)
        self.run_id = run.info.run_id
        self.uri = uri

    def log_params(self, params: dict) -> None:
        if not self.enabled:
            return
        clean = {k: ("None" if v is None else str(v))[:500] for k, v in params.items()}
        items = list(clean.items())
        existing = self.mlflow.get_run(self.run_id).data.params
        items = [(k, v) for k, v in items if k not in existing]
        for i in range(0, len(items), 90):
            self.mlflow.log_params(dict(items[i : i + 90]))

    def log_metrics(self, metrics: dict, step: int) -> None:
        if not self.enabled:
            return
        m = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(float(v))}
        self.mlflow.log_metrics(m, step=step)

    def set_tags(self, tags: dict) -> None:
        if self.enabled:
            self.mlflow.set_tags({k: str(v) for k, v in tags.items()})

    def log_artifacts(self, path: str, artifact_path: str | None = None) -> None:
        if self.enabled:
            p = Path(path)
            if p.is_dir():
                self.mlflow.log_artifacts(str(p), artifact_path)
            elif p.exists():
                self.mlflow.log_artifact(str(p), artifact_path)

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled:
            self.mlflow.end_run(status=status)
