"""``search --log-models``: every chosen subnet as an MLflow model a deployment tool can take.

A subnet cut out of a supernet is not deployable as is: its BatchNorm statistics belong to the
supernet. Each chosen subnet is therefore recalibrated the way its accuracy was measured (OFA's
recipe: the same calibration images, seed and batch size as the search's evaluator), so the
logged model is the network whose accuracy the tag reports. It is logged in MLflow's ``pt2``
format (a ``torch.export`` program: no project code needed to load it) with an input example and
a tensor signature, so ``mlflow models serve`` and the model registry take it as is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ofa_platform.errors import UserError
from search_spaces.arch import ArchConfig

__all__ = ["LoggedSubnet", "calibration_images", "log_models", "model_name"]

#: Images in the input example: 2, because ``torch.export`` fixes a size-1 batch dimension.
_EXAMPLE_BATCH = 2


@dataclass(frozen=True)
class LoggedSubnet:
    """One logged model: its name in the run, its URI, and what its tags say."""

    name: str
    model_uri: str
    model_id: str | None
    tags: Mapping[str, str]


def model_name(target: float, unit: str) -> str:
    """``subnet-15ms``, ``subnet-22_5ms``: an MLflow model name from a target."""
    text = f"subnet-{target:g}{unit}"
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


def calibration_images(data: str, resolution: int, *, n_images: int, batch: int,
                       seed: int) -> tuple[list[Any], tuple[float, ...], tuple[float, ...]]:
    """The BN calibration batches a search's evaluator uses (same split, order and seed), and
    the normalisation the model expects at its input."""
    from ofa_platform.datasets import iterate_batches, load_dataset

    splits = load_dataset(data, seed=seed, heads=(n_images, 1))
    out, seen = [], 0
    for x, _ in iterate_batches(splits.train, batch_size=batch, resolution=resolution,
                                train=False, seed=seed, epoch=0, mean=splits.mean,
                                std=splits.std):
        if seen >= n_images:
            break
        x = x[:n_images - seen]
        out.append(x)
        seen += len(x)
    return out, tuple(splits.mean), tuple(splits.std)


def log_models(rows: Sequence[Mapping[str, Any]], supernet: Any, *, data: str,
               calib_images: int, calib_batch: int, seed: int, hardware: str,
               device: str = "cpu") -> list[LoggedSubnet]:
    """Log every feasible row of a search's Pareto table as an MLflow model on the active run.

    Tags on each model: ``ofa.arch`` (the ArchConfig JSON), ``ofa.target``, ``ofa.unit``,
    ``ofa.cost`` (cost under the search's estimator), ``ofa.hardware``, ``ofa.macs``,
    ``ofa.measured_accuracy``, ``ofa.predicted_accuracy``; the model metadata also carries the
    input resolution and normalisation. Raises ``UserError`` when there is no trained supernet.
    """
    import mlflow
    import torch

    from ofa_platform.evaluation import recalibrate_bn

    if supernet is None:
        raise UserError("--log-models needs --checkpoint: a predictor-only search has no "
                        "trained weights to log")
    logged: list[LoggedSubnet] = []
    calib: dict[int, tuple[list[Any], tuple[float, ...], tuple[float, ...]]] = {}
    for row in rows:
        if not row.get("feasible") or not row.get("arch_json"):
            continue
        arch = ArchConfig.from_json(row["arch_json"])
        if arch.r not in calib:
            calib[arch.r] = calibration_images(data, arch.r, n_images=calib_images,
                                               batch=calib_batch, seed=seed)
        images, mean, std = calib[arch.r]
        model = recalibrate_bn(supernet, arch, images, device).to("cpu").eval()
        example = images[0][:_EXAMPLE_BATCH].detach().to("cpu", torch.float32).numpy()
        tags = _model_tags(row, arch, hardware)
        name = model_name(float(row["target"]), str(row.get("unit", "")))
        info = mlflow.pytorch.log_model(
            model, name=name, input_example=example, signature=_signature(model, example),
            serialization_format="pt2", tags=tags,
            metadata={"resolution": arch.r, "mean": list(mean), "std": list(std),
                      "input": "NCHW float32, normalised with mean/std"})
        logged.append(LoggedSubnet(name, info.model_uri, getattr(info, "model_id", None), tags))
    return logged


def _signature(model: Any, example: Any) -> Any:
    """A tensor signature: NCHW float32 images at the example's resolution, any batch; logits
    as wide as the model's output."""
    import numpy as np
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema, TensorSpec

    with torch.no_grad():
        out = model(torch.from_numpy(example)).numpy()
    r = example.shape[-1]
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, 3, r, r))]),
        outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, out.shape[1]))]))


def _model_tags(row: Mapping[str, Any], arch: ArchConfig, hardware: str) -> dict[str, str]:
    """The logged model's tags: what it is, what it was chosen for, what it measured."""
    return {"ofa.arch": arch.to_json(), "ofa.target": f"{float(row['target']):g}",
            "ofa.unit": str(row.get("unit", "")), "ofa.cost": f"{float(row['cost']):.6g}",
            "ofa.hardware": hardware, "ofa.macs": str(int(row.get("macs", 0))),
            "ofa.measured_accuracy": _text(row.get("measured_accuracy")),
            "ofa.predicted_accuracy": _text(row.get("accuracy"))}


def _text(value: Any) -> str:
    """A float tag; an unmeasured value (NaN or missing) is ``nan``, never a made-up number."""
    try:
        return f"{float(value):.6g}"
    except (TypeError, ValueError):
        return "nan"

