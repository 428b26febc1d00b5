"""ray_cluster.yaml, validated offline: against the JSON schema shipped inside the installed ray
package, then for the properties the platform relies on (GPU workers from zero on spot, MLflow
on a real database on the head, shared checkpoint storage, token auth, the project installed)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def config() -> dict:
    return yaml.safe_load((REPO / "ray_cluster.yaml").read_text())


def _commands(config: dict, *keys: str) -> str:
    out = []
    for key in keys:
        out.extend(config.get(key) or [])
        for node in config["available_node_types"].values():
            out.extend(node.get(key) or [])
    return "\n".join(out)


def test_matches_ray_schema(config: dict) -> None:
    import ray.autoscaler

    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    schema = json.loads(schema_path.read_text())
    jsonschema.validate(config, schema)   # raises ValidationError naming the bad key


def test_ray_own_validation_accepts_it(config: dict) -> None:
    from ray.autoscaler._private.util import validate_config

    validate_config(config)


def test_schema_check_is_not_vacuous(config: dict) -> None:
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    broken = dict(config, available_node_types={"head": {"node_config": {}}})   # no resources
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_aws_with_gpu_workers_from_zero_on_spot(config: dict) -> None:
    assert config["provider"]["type"] == "aws"
    head = config["head_node_type"]
    workers = {k: v for k, v in config["available_node_types"].items() if k != head}
    gpu = {k: v for k, v in workers.items() if v["resources"].get("GPU", 0) > 0}
    assert gpu, "no GPU worker type"
    assert all(v.get("min_workers", 0) == 0 for v in gpu.values())   # autoscale from zero
    assert all(v["max_workers"] > 0 for v in gpu.values())
    spot = [v for v in gpu.values()
            if v["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"]
    assert spot, "no spot GPU workers"
    top = max(gpu.values(), key=lambda v: v.get("priority", 0))
    assert top["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"
    assert config["available_node_types"][head]["resources"].get("GPU", 0) == 0
    assert config["max_workers"] >= max(v["max_workers"] for v in gpu.values())


def test_head_runs_mlflow_on_a_real_database(config: dict) -> None:
    start = _commands(config, "head_start_ray_commands")
    assert "mlflow server" in start
    match = re.search(r"--backend-store-uri\s+\"?(\w+)", start)
    assert match and match.group(1).startswith(("postgresql", "mysql")), "not a real database"
    assert "--artifacts-destination s3://" in start
    init = _commands(config, "initialization_commands", "head_setup_commands", "setup_commands")
    assert "postgresql" in init and "createdb" in init
    assert "psycopg2" in init
    # the server starts before Ray, and jobs inherit its URI
    assert start.index("mlflow server") < start.index("ray start --head")
    assert "MLFLOW_TRACKING_URI=http://" in start


def test_shared_checkpoint_storage_and_token_auth(config: dict) -> None:
    start = _commands(config, "head_start_ray_commands", "worker_start_ray_commands")
    assert start.count("OFA_STORAGE_PATH=s3://") == 2       # head and workers agree
    assert "RAY_AUTH_MODE=token" in " ".join(config["docker"]["run_options"])
    assert any("auth_token" in dst for dst in config["file_mounts"])
    assert "RAY_AUTH_MODE=disabled" not in (REPO / "ray_cluster.yaml").read_text()


def test_setup_installs_this_project(config: dict) -> None:
    setup = _commands(config, "setup_commands")
    mounts = config["file_mounts"]
    project = next(dst for dst, src in mounts.items() if src == ".")
    assert f"pip install -q -e {project}" in setup
    excluded = " ".join(config["rsync_exclude"])
    for name in (".venv", "*.db", "data", ".git"):
        assert name in excluded


def test_images_run_the_installed_ray(config: dict) -> None:
    """Client and cluster must run the same Ray version (the Jobs API and token auth change)."""
    import ray

    images = [v for k, v in config["docker"].items() if k.endswith("image")]
    assert images
    assert all(img.split(":")[1].startswith(f"{ray.__version__}-py311") for img in images)


def test_mlflow_is_not_bound_to_every_interface(config: dict) -> None:
    """The tracking server has no authentication: it listens on the head's private address
    (reached by drivers inside the VPC, by people through an SSH tunnel), never 0.0.0.0."""
    start = _commands(config, "head_start_ray_commands")
    server = start[start.index("mlflow server"):]
    host = re.search(r"--host\s+(\S+)", server)
    assert host and "0.0.0.0" not in host.group(1) and "hostname -I" in server
    assert "ssh" in (REPO / "ray_cluster.yaml").read_text().split("cluster_name:")[0]
