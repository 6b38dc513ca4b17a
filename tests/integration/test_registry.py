"""The registry against a real MLflow tracking server: training runs logged and
registered, aliases champion / challenger / previous, promotion and rollback (the
module's API and its command line)."""
import json
import subprocess
import sys

import pytest

from msd_pipeline import registry

pytestmark = pytest.mark.integration


@pytest.fixture
def mlflow_client(mlflow_tracking_uri):
    client = registry.client(mlflow_tracking_uri)
    yield client
    if client.search_registered_models(f"name = '{registry.MODEL_NAME}'"):
        client.delete_registered_model(registry.MODEL_NAME)


def _training_run(tmp_path, name, rmse):
    """A run folder as train_models.py leaves it (metrics.json, report, a plot)."""
    run_dir = tmp_path / name
    (run_dir / "plots").mkdir(parents=True)
    metrics = {
        "run_id": name,
        "training_settings": {"folds": 2, "classifiers": ["logistic_regression"]},
        "decade": {"chosen": "logistic_regression", "model_dir": "models/decade_logistic_regression",
                   "test": {"accuracy": 0.5, "macro_f1": 0.4, "weighted_f1": 0.45},
                   "baseline": {"accuracy": 0.3, "macro_f1": 0.1, "weighted_f1": 0.2}},
        "year": {"chosen": "linear_regression", "model_dir": "models/year_linear_regression",
                 "test": {"mae": 6.0, "rmse": rmse, "r2": 0.2},
                 "baseline": {"mae": 8.0, "rmse": 10.0, "r2": 0.0}},
        "evaluation_split": {"hash": "abc123", "songs": 40},
    }
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "report.md").write_text("# report " + name)
    (run_dir / "plots" / "year.png").write_bytes(b"\x89PNG fake")
    return run_dir, metrics


def _register(client, tmp_path, name, rmse=7.0):
    run_dir, metrics = _training_run(tmp_path, name, rmse)
    run_id = registry.log_training_run(client, str(run_dir), metrics, str(run_dir),
                                       {"dag_id": "test"})
    return registry.register_challenger(client, str(run_dir), metrics, run_id), run_id


def test_a_training_run_is_logged_with_params_metrics_and_files(mlflow_client, tmp_path):
    ref, run_id = _register(mlflow_client, tmp_path, "run_a", rmse=7.5)
    run = mlflow_client.get_run(run_id)
    assert run.data.metrics["year_rmse"] == 7.5
    assert run.data.metrics["decade_baseline_macro_f1"] == 0.1
    assert run.data.params["decade_model"] == "logistic_regression"
    assert run.data.params["training.folds"] == "2"
    assert run.data.tags["split_hash"] == "abc123"
    files = {item.path for item in mlflow_client.list_artifacts(run_id, "run")}
    assert {"run/metrics.json", "run/report.md", "run/plots"} <= files
    assert ref.artifacts_uri == str(tmp_path / "run_a")
    version = mlflow_client.get_model_version(registry.MODEL_NAME, ref.version)
    assert version.source == "runs:/{}/run".format(run_id)
    registry.record_decision(mlflow_client, run_id, {
        "status": "rejected", "gate": {"reasons": ["year RMSE 7.500 > champion", "b"]}})
    tags = mlflow_client.get_run(run_id).data.tags
    assert tags["decision"] == "rejected"
    assert tags["decision_reasons"] == "year RMSE 7.500 > champion; b"
    assert "decision.json" in {item.path for item in mlflow_client.list_artifacts(run_id)}
    assert version.tags["year_model"] == "models/year_linear_regression"


def test_aliases_follow_promotions_and_rollbacks(mlflow_client, tmp_path):
    assert registry.resolve_alias(registry.CHAMPION, mlflow_client) is None
    first, _ = _register(mlflow_client, tmp_path, "run_1")
    assert registry.resolve_alias(registry.CHALLENGER, mlflow_client) == first
    assert registry.promote(mlflow_client, first.version) == {"champion": first.version,
                                                              "previous": None}
    second, _ = _register(mlflow_client, tmp_path, "run_2")
    rejected, _ = _register(mlflow_client, tmp_path, "run_rejected")
    registry.promote(mlflow_client, second.version)
    third, _ = _register(mlflow_client, tmp_path, "run_3")
    registry.promote(mlflow_client, third.version)
    current = registry.aliases(mlflow_client)
    assert current[registry.CHAMPION] == third
    assert current[registry.PREVIOUS] == second
    assert current[registry.CHALLENGER] == third
    assert rejected.version not in {ref.version for ref in current.values()}

    assert registry.rollback(mlflow_client) == {"champion": second.version,
                                                "previous": first.version,
                                                "rolled_back": third.version}
    assert registry.rollback(mlflow_client)["champion"] == first.version
    assert registry.resolve_alias(registry.PREVIOUS, mlflow_client) is None
    with pytest.raises(registry.RegistryError, match="nothing to roll back"):
        registry.rollback(mlflow_client)
    tags = mlflow_client.get_model_version(registry.MODEL_NAME, third.version).tags
    assert "rolled_back_at" in tags and tags["replaced_version"] == second.version


def test_rollback_is_one_command(mlflow_client, mlflow_tracking_uri, tmp_path):
    first, _ = _register(mlflow_client, tmp_path, "cli_1")
    registry.promote(mlflow_client, first.version)
    second, _ = _register(mlflow_client, tmp_path, "cli_2")
    registry.promote(mlflow_client, second.version)
    command = [sys.executable, "-m", "msd_pipeline.registry", "rollback",
               "--tracking-uri", mlflow_tracking_uri]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["champion"] == first.version
    assert registry.resolve_alias(registry.CHAMPION, mlflow_client).version == first.version
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 1 and "nothing to roll back" in again.stderr
