"""What a user asks ``train`` for: one frozen value read by the CLI, a job YAML and a study.

Standard library only, so the command line builds its options (defaults and choices) from
these fields without importing torch or Ray.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrainRequest", "AMP_MODES", "EVAL_SPLITS", "PLACEMENT_STRATEGIES", "DATA_LOADERS"]

#: mixed precision: ``auto`` (bf16 where the GPU has it, else fp16; off on CPU) or forced
AMP_MODES = ("auto", "bf16", "fp16", "off")
#: where per-epoch accuracies are measured: held out of the training rows, or the test split
EVAL_SPLITS = ("val", "test")
#: Ray Train's placement group strategies for the workers
PLACEMENT_STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")
#: how training images are read (``ofa_platform.data.raydata.resolve_loader``)
DATA_LOADERS = ("auto", "ray-data", "memory")


@dataclass(frozen=True)
class TrainRequest:
    """What a user asks for (CLI flags or a Ray Job YAML), not yet validated.

    ``space`` defaults to the schedule's space; ``batch_size`` is per worker;
    ``small_input`` defaults to the dataset recipe's (CIFAR: the stem keeps 32x32);
    ``hardware`` defaults to ``cpu`` or the GPU kind the price table knows.
    ``init_from`` is ``RUN_ID:PHASE`` (a training run's finished phase, from MLflow) or
    ``CHECKPOINT:PHASE`` (a supernet file of that phase): the job skips the recipe's phases up
    to and including ``PHASE`` and starts from those weights (a shared teacher).
    """

    schedule: str
    data: str
    space: str | None = None
    workers: int = 2
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    epoch_scale: float = 1.0
    subset: int | None = None
    experiment: str = "ofa-train"
    seed: int = 0
    batch_size: int = 64
    width_mult: float = 1.0
    small_input: bool | None = None
    hardware: str | None = None
    max_failures: int = 2
    storage_path: str | None = None
    tracking_uri: str | None = None
    init_checkpoint: str | None = None
    init_from: str | None = None
    run_name: str | None = None
    amp: str = "auto"
    recal_images: int = 512
    val_limit: int | None = None
    loader_workers: int = 0
    data_loader: str = "auto"  # auto | ray-data | memory (ofa_platform.data.raydata)
    data_cpus: float = 0.5  # logical CPUs per Ray Data decode task
    #: Ray Train's worker placement: PACK (default), SPREAD (one worker per node where it
    #: can, so losing a node loses one worker), STRICT_PACK or STRICT_SPREAD
    placement_strategy: str = "PACK"
    #: ``val`` (held out of the training rows) or ``test`` (the dataset's whole test split,
    #: capped by ``val_limit``): where the per-epoch accuracies are measured
    eval_split: str = "val"
    #: an interrupted training run (MLflow run id) to continue: the same MLflow run and Ray
    #: run, from the last checkpoint Ray Train kept; its cost so far is added to this attempt's
    resume_run_id: str | None = None
    #: extra MLflow tags on the training run (a study files its runs under them)
    tags: tuple[tuple[str, str], ...] = ()
