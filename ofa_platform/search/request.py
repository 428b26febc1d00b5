"""What a user asks ``search`` for: one frozen value read by the CLI, a job YAML and a study.

Standard library only (and :class:`~ofa_platform.errors.UserError`), so the command line
builds its options from these fields without importing numpy, torch or Ray.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ofa_platform.errors import UserError

__all__ = ["SearchRequest", "LATENCY_CHOICES", "EXPORT_FORMATS", "parse_targets"]

LATENCY_CHOICES = "lut:DIR | measured:cpu | measured:cuda | macs"
#: ``--export`` file formats: torch.export, TorchScript, ONNX
EXPORT_FORMATS = ("export", "torchscript", "onnx")


@dataclass(frozen=True)
class SearchRequest:
    """The knobs of ``ofa-platform search`` (and of a ``jobs/search.py`` YAML config).

    ``generations`` None is the space's default (OFA's 500; CompOFA's 50 and 300 for its
    fixed- and elastic-kernel spaces); ``followup_generations`` None is the multi-target
    paper's 63 for its top-down and bottom-up. ``method``/``train_run_id`` override what the
    checkpoint says. ``width_mult`` None is the checkpoint's width, else 1.0."""

    space: str
    targets: Sequence[float]
    latency: str
    strategy: str = "vanilla"
    width_mult: float | None = None
    predictor: str | None = None
    checkpoint: str | None = None
    resolutions: str | None = None
    workers: int = 1
    export: str | None = None
    export_format: str = "export"
    seed: int = 0
    generations: int | None = None
    followup_generations: int | None = None
    population_size: int = 100
    data: str | None = None
    experiment: str = "search"
    tracking_uri: str | None = None
    out_dir: str = "runs/search"
    cache_dir: str = ".ofa_cache"
    batch_size: int | None = None
    hardware: str = "cpu"
    method: str | None = None
    train_run_id: str | None = None
    n_arch_samples: int = 1000
    n_population_rows: int = 200
    calib_images: int = 2000
    calib_batch: int = 200
    eval_batch: int = 200
    val_subset: int | None = None
    subset: int | None = None  # the training rows of the checkpoint's run (``train --subset``)
    gpus_per_worker: float = 0.0
    log_mlflow: bool = True
    log_models: bool = False
    measure_warmup: int = 5
    measure_repeats: int = 20
    measure_threads: int | None = None  # None: 1 on a small machine (latency.default_threads)
    #: extra MLflow tags on the search run (a study files its runs under them)
    tags: tuple[tuple[str, str], ...] = ()


def parse_targets(text: str | Sequence[float]) -> tuple[float, ...]:
    """``"15,20,25"`` -> (15.0, 20.0, 25.0); every target must be a positive number."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        try:
            value = float(item)
        except (TypeError, ValueError):
            raise UserError(f"targets: {item!r} is not a number") from None
        if not 0 < value < float("inf"):  # NaN and inf are no target either
            raise UserError(f"targets: {value:g} is not a positive finite number")
        out.append(value)
    if not out:
        raise UserError("targets: none given")
    return tuple(out)
