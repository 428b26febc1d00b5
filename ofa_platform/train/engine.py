"""The per-worker Ray Train loop: one job runs every phase of a schedule on a supernet.

Each Ray Train worker runs :func:`train_loop_per_worker`. The design choices that matter:

- **Same subnets everywhere.** Every worker draws the step's subnets and resolution from an RNG
  seeded by ``(seed, global step)``, so DDP's gradient all-reduce adds gradients of the same
  subnet on every rank, and the set of parameters that a step does not touch (inactive blocks,
  unused kernel sizes) is the same on every rank.
- **One all-reduce per optimizer step.** A step's subnets run forward/backward one at a time
  (activations of one subnet in memory at once); all but the last run under DDP's
  ``no_sync()``, so their gradients accumulate locally and the last backward all-reduces the
  sum. ``find_unused_parameters=True`` marks the parameters no subnet of the step used (DDP
  counts a parameter used in any ``no_sync`` pass as used), which is what makes the elastic
  supernet work under DDP at all; it walks the autograd graph only on the synchronising pass.
  Buffers are not broadcast per forward: BN statistics are recalibrated before evaluation.
- **Resumable.** Once per epoch (a Ray report costs about 2 s, so never per step) rank 0 writes a
  checkpoint (weights, optimizer, scaler, teacher weights, phase, epoch, step, RNG seed
  derivation); a restarted worker group continues from ``ray.train.get_checkpoint()``.
  Randomness is derived from ``(seed, epoch, rank)`` and ``(seed, step)``, so a resumed run
  draws what the uninterrupted run would have drawn.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ofa_platform.datasets import DataSpec
from ofa_platform.train.schedule import Phase, Schedule
from search_spaces.arch import ArchConfig
from search_spaces.space import SearchSpace
from search_spaces.supernet import Supernet

__all__ = ["EngineConfig", "WorkerEnv", "train_loop_per_worker", "run_plain", "plain_env",
           "middle_arch", "eval_archs", "param_groups", "STATE_FILE", "SUPERNET_FILE",
           "checkpoint_provenance"]

STATE_FILE = "train_state.pt"
SUPERNET_FILE = "supernet.pt"


@dataclass(frozen=True)
class EngineConfig:
    """Everything a worker needs, resolved and validated by the driver before Ray starts.

    ``schedule`` is already scaled (``Schedule.scaled``); ``batch_size`` is per worker.
    ``data`` is the driver's parsed :class:`DataSpec` (absolute paths, and a recipe's
    resolutions, normalisation and stem), so workers in other directories read the same data
    the same way; a spec string is parsed on the worker.
    ``amp`` is ``auto`` (bf16 where the GPU supports it, else fp16; off on CPU), ``bf16``,
    ``fp16`` or ``off``. ``init_checkpoint`` is a supernet file whose weights the first phase
    starts from instead of the fresh initialisation; with ``init_phase`` it is that phase's
    finished weights (``--init-from RUN:PHASE``): the run skips the phases up to and
    including it and continues from there, that phase's weights also teaching.
    ``loader_workers`` decode on-disk images (ImageFolder) in that many DataLoader processes,
    so a GPU is not starved by JPEG decoding.
    """

    schedule: Schedule
    space: str
    data: DataSpec | str
    batch_size: int = 64
    seed: int = 0
    subset: int | None = None
    width_mult: float = 1.0
    small_input: bool | None = None
    amp: str = "auto"
    recal_images: int = 512
    val_limit: int | None = None
    loader_workers: int = 0
    init_checkpoint: str | None = None
    init_phase: str | None = None
    extra_report: dict[str, Any] = field(default_factory=dict)
    #: ``memory`` (every worker decodes the dataset) or ``ray-data`` (streamed, see
    #: ``ofa_platform.data.raydata``); the driver resolves ``auto`` before Ray starts.
    data_loader: str = "memory"
    data_cpus: float = 0.5  # logical CPUs per Ray Data decode task
    mlflow_run_id: str | None = None  # the driver's training run, written into checkpoints
    #: where the per-epoch accuracies are measured: ``val`` (held out of the training rows)
    #: or ``test`` (the dataset's whole test split, ``val_limit`` still caps it; a study)
    eval_split: str = "val"


# --------------------------------------------------------------------------- pure helpers
def checkpoint_provenance(cfg: EngineConfig) -> dict[str, Any]:
    """What a search of a checkpoint files itself under: the method (the schedule's name) and
    the MLflow training run (``ofa.method`` and ``ofa.train_run_id`` on the search run)."""
    out: dict[str, Any] = {"method": cfg.schedule.name}
    if cfg.mlflow_run_id:
        out["mlflow_run_id"] = cfg.mlflow_run_id
    return out


def middle_arch(space: SearchSpace, r: int | None = None) -> ArchConfig:
    """The 'middle' subnet: per stage the middle depth, kernel and ratio (ratio coupled to the
    depth in compound spaces); middle resolution unless ``r`` is given. A space that knows
    its own middle (ResNet50D: depth, ratio and width) is asked for it."""
    if hasattr(space, "middle"):
        return space.middle(r)
    ks, es = [], []
    for s in space.stages:
        d = s.depths[len(s.depths) // 2]
        k = s.kernels[len(s.kernels) // 2]
        e = s.coupled_ratio(d) if space.compound else s.ratios[len(s.ratios) // 2]
        ks.append((k,) * d)
        es.append((e,) * d)
    res = space.resolutions[len(space.resolutions) // 2] if r is None else r
    return ArchConfig(ks=tuple(ks), e=tuple(es), r=res)


def eval_archs(space: SearchSpace) -> dict[str, ArchConfig]:
    """The three subnets evaluated every epoch, under their metric suffixes."""
    return {"smallest": space.smallest(), "middle": middle_arch(space),
            "largest": space.largest()}


def param_groups(model: nn.Module, weight_decay: float,
                 no_decay_bn_bias: bool) -> list[dict[str, Any]]:
    """Two SGD groups: weight decay on conv/linear weights only (OFA's recipe exempts BN and
    biases, whose decay only shrinks the network's scale without regularising it)."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_bn = isinstance(module, nn.modules.batchnorm._BatchNorm)
            (no_decay if no_decay_bn_bias and (is_bn or name == "bias" or p.ndim <= 1)
             else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _arch_digest(keys: Sequence[str]) -> float:
    """A number that changes when any sampled subnet changes (MLflow metrics are numbers)."""
    h = hashlib.sha256("|".join(keys).encode()).digest()
    return float(int.from_bytes(h[:6], "big"))


# --------------------------------------------------------------------------- worker state
@dataclass
class _State:
    """What survives a restart (saved in ``STATE_FILE`` with the optimizer)."""

    epoch: int = 0  # next global epoch to run
    step: int = 0  # global optimizer steps done
    started_phase: int = -1  # last phase whose start actions (sort, init, teacher) ran
    snapshots: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    resumed_from: int = -1


@dataclass(frozen=True)
class _Step:
    """One optimizer step's inputs: the global step, LR, β, the batch at its resolution and
    the subnets it trains (with which one is the full model)."""

    index: int
    lr: float
    beta: float
    x: torch.Tensor
    y: torch.Tensor
    chosen: list[tuple[ArchConfig, bool]]


class _Worker:
    """One worker's training objects; methods are the parts of the loop."""

    def __init__(self, cfg: EngineConfig, env: WorkerEnv) -> None:
        from ofa_platform.data.raydata import load_worker_dataset
        from ofa_platform.datasets import parse_data_spec
        from search_spaces.spaces import get_space

        self.cfg, self.schedule, self.env = cfg, cfg.schedule, env
        self.rank, self.world, self.device = env.rank, env.world_size, env.device
        self.cuda = self.device.type == "cuda"
        self.dataset = load_worker_dataset(
            parse_data_spec(cfg.data), loader=cfg.data_loader, subset=cfg.subset, seed=cfg.seed,
            recal_images=cfg.recal_images, val_limit=cfg.val_limit)
        if cfg.eval_split == "test":
            from ofa_platform.datasets import load_test_split

            self.dataset = replace(self.dataset, val=load_test_split(
                parse_data_spec(cfg.data), cfg.val_limit))
        self.stream: Any = None  # the Ray Data stream, made on the first streamed epoch
        self.space = get_space(cfg.space).with_resolutions(self.dataset.resolutions)
        self.max_res = max(self.space.resolutions)
        self.small = self.dataset.small_input if cfg.small_input is None else cfg.small_input
        self.state = _State()
        self.opt_state: dict[str, Any] | None = None
        self.scaler_state: dict[str, Any] | None = None
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        blob = self._read_restore(env.checkpoint_dir) if env.checkpoint_dir else None
        first = max(self.state.started_phase, 0)
        if blob is None and cfg.init_phase is not None:
            first = self.schedule.phase_index(cfg.init_phase)
        self.supernet = self._make(first)
        if blob is not None:
            self.supernet.load_state_dict(blob["model"])
        elif cfg.init_checkpoint:
            self._init_from(cfg.init_checkpoint, first)
        self.amp_dtype = _amp_dtype(cfg.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype == torch.float16)
        if self.scaler_state:
            self.scaler.load_state_dict(self.scaler_state)
        self._place()
        self.optimizer: torch.optim.Optimizer | None = None
        self.teacher: nn.Module | None = None
        n_train = self.dataset.meta.get("train_rows", self.dataset.n_train)
        self.steps_per_epoch = max(1, n_train // (cfg.batch_size * self.world))

    # ----------------------------------------------------------------- the supernet
    def _base_space(self, index: int) -> SearchSpace:
        """The space whose supernet phase ``index`` trains (``Phase.base_space``)."""
        return self.schedule.phases[index].base_space(self.space)

    def _make(self, index: int, dropout: float | None = None) -> Supernet:
        """A fresh supernet for phase ``index`` (fresh OFA-style init)."""
        from search_spaces.registry import create_supernet

        return create_supernet(
            self._base_space(index), width_mult=self.cfg.width_mult,
            n_classes=self.dataset.n_classes, small_input=self.small,
            dropout=self.schedule.dropout if dropout is None else dropout)

    def _place(self) -> None:
        """Move the supernet to the device and wrap it (DDP under Ray)."""
        mf = torch.channels_last if self.cuda else torch.contiguous_format
        self.supernet.to(self.device, memory_format=mf)
        self.model = self.env.wrap_model(self.supernet)

    def _init_from(self, path: str, index: int) -> None:
        """Start from a finished phase's weights (``--init-checkpoint`` / ``--init-from``):
        carried into phase ``index``'s supernet; with ``init_phase`` the run continues after
        that phase, which also becomes the teacher snapshot of its name."""
        from search_spaces.checkpoints import load_supernet
        from search_spaces.transfer import transfer_weights

        loaded, _ = load_supernet(path)
        transfer_weights(loaded, self.supernet)
        if self.cfg.init_phase is not None:
            phase = self.schedule.phases[index]
            self.state.epoch = phase.end_epoch
            self.state.started_phase = index
            self.state.snapshots[phase.name] = _cpu_copy(self.supernet)

    # ----------------------------------------------------------------- checkpointing
    def _read_restore(self, directory: str) -> dict[str, Any]:
        blob = torch.load(os.path.join(directory, STATE_FILE), map_location="cpu",
                          weights_only=True)
        self.state = _State(epoch=blob["epoch"], step=blob["step"],
                            started_phase=blob["started_phase"], snapshots=blob["snapshots"],
                            resumed_from=blob["epoch"])
        self.opt_state = blob["optimizer"]
        self.scaler_state = blob["scaler"]
        return blob

    def _write_checkpoint(self, d: str, phase_index: int) -> None:
        """Rank 0 writes what a restart reads (``STATE_FILE``) and a standalone supernet file
        (what MLflow archives and ``--init-from`` starts from)."""
        from search_spaces.checkpoints import save_supernet

        s = self.state
        blob = {"model": self.supernet.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(), "epoch": s.epoch, "step": s.step,
                "started_phase": s.started_phase, "snapshots": s.snapshots}
        torch.save(blob, os.path.join(d, STATE_FILE))
        save_supernet(os.path.join(d, SUPERNET_FILE), self.supernet,
                      extra={"schedule": self.schedule.name, "epoch": s.epoch,
                             "phase_index": phase_index,
                             "phase": self.schedule.phases[phase_index].name,
                             **checkpoint_provenance(self.cfg)})

    # ----------------------------------------------------------------- phases
    def _new_optimizer(self, phase: Phase) -> torch.optim.Optimizer:
        o = self.schedule.optimizer
        groups = param_groups(self.supernet, o.weight_decay, o.no_decay_bn_bias)
        return torch.optim.SGD(groups, lr=phase.lr, momentum=o.momentum, nesterov=o.nesterov)

    def _teacher_names(self) -> set[str]:
        return {t for p in self.schedule.phases if (t := self.schedule.teacher_of(p))}

    def start_phase(self, index: int) -> None:
        """Phase start actions: snapshot the finished teacher phase, carry the weights into
        this phase's space when it differs, re-init or keep weights, sort channels, fresh
        optimizer (per-phase LR schedules restart momentum as OFA's separate jobs do), and
        the frozen teacher."""
        phase = self.schedule.phases[index]
        resumed_here = self.state.started_phase >= index
        rebuilt = False
        if not resumed_here:
            if index > 0:
                prev = self.schedule.phases[index - 1]
                if prev.name in self._teacher_names():
                    self.state.snapshots[prev.name] = _cpu_copy(self.supernet)
                rebuilt = self._enter_space(index)
                if phase.init == "scratch":
                    self.supernet.load_state_dict(self._make(index).state_dict())
            if phase.sort_channels:
                self.supernet.sort_channels(phase.sort_keep_ratios or ())
            self.state.started_phase = index
        one_cosine = self.schedule.lr_schedule == "global_cosine"
        if self.optimizer is None or not one_cosine or rebuilt:
            self.optimizer = self._new_optimizer(phase)
            # A restored optimizer belongs to the phase it was saved in: reuse it when the run
            # resumes inside that phase, or always when one cosine spans the whole job.
            if self.opt_state is not None and (resumed_here or one_cosine):
                self.optimizer.load_state_dict(self.opt_state)
        if phase.sort_channels and not resumed_here:
            self.optimizer.state.clear()  # momentum buffers no longer match sorted channels
        self.opt_state = None
        self.teacher = self._build_teacher(phase)
        self.phase_space = phase.space(self.space)

    def _enter_space(self, index: int) -> bool:
        """Rebuild the supernet in phase ``index``'s space when it differs from the current
        one, carrying the weights over (``search_spaces.transfer``); True when rebuilt."""
        from search_spaces.transfer import transfer_weights

        if self._base_space(index).name == self.supernet.space.name:
            return False
        old = self.supernet.cpu()
        self.supernet = transfer_weights(old, self._make(index))
        self._place()
        return True

    def _build_teacher(self, phase: Phase) -> nn.Module | None:
        """The frozen teacher of a frozen-teacher mode: the teacher phase's full model, no
        dropout (the reference builds it with ``dropout_rate=0``). With ``teacher_bn: batch``
        (the reference's ``teacher_model.train()`` under ``no_grad``) its BN normalises with
        each batch's statistics; ``running`` uses its stored statistics (eval mode)."""
        name = self.schedule.teacher_of(phase)
        if name is None:
            return None
        index = self.schedule.phase_index(name)
        teacher = self._make(index, dropout=0.0)
        teacher.load_state_dict(self.state.snapshots[name])
        teacher.set_active(self.schedule.phases[index].space(self.space).largest())
        teacher.train(self.schedule.teacher_bn == "batch").requires_grad_(False)
        mf = torch.channels_last if self.cuda else torch.contiguous_format
        return teacher.to(self.device, memory_format=mf)

    # ----------------------------------------------------------------- one epoch
    def _batches(self, epoch: int, train: bool, resolution: int, rank: int,
                 world: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        from ofa_platform.datasets import iterate_batches

        return iter(iterate_batches(self.dataset, batch_size=self.cfg.batch_size,
                                    resolution=resolution, train=train, seed=self.cfg.seed,
                                    epoch=epoch, rank=rank, world_size=world,
                                    num_workers=self.cfg.loader_workers))

    def _train_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's training batches at the largest resolution: from memory, or streamed
        by Ray Data (decoded and cropped in Ray tasks; flipped and normalised here)."""
        if self.cfg.data_loader != "ray-data":
            return self._batches(epoch, True, self.max_res, self.rank, self.world)
        if self.stream is None:
            from ofa_platform.data.raydata import RayDataStream
            from ofa_platform.datasets import parse_data_spec

            self.stream = RayDataStream(
                parse_data_spec(self.cfg.data), subset=self.cfg.subset, seed=self.cfg.seed,
                size=self.max_res, rank=self.rank, world=self.world,
                batch_size=self.cfg.batch_size, task_cpus=self.cfg.data_cpus)
        return iter(self.stream.batches(epoch, self.device if self.cuda else None))

    def train_epoch(self, epoch: int, phase: Phase) -> dict[str, float]:
        """One epoch of optimizer steps; each step is :meth:`_plan_step` then
        :meth:`_run_step`."""
        torch.manual_seed(self.cfg.seed * 1_000_003 + epoch * 101 + self.rank)  # dropout
        self.model.train()
        losses: list[float] = []
        keys: list[str] = []
        lr = beta = 0.0
        batches = self._train_batches(epoch)
        t0 = time.perf_counter()
        n_images = 0
        for i in range(self.steps_per_epoch):
            try:
                x, y = next(batches)
            except StopIteration:
                break
            step = self._plan_step(epoch * self.steps_per_epoch + i, phase, x, y)
            lr, beta = step.lr, step.beta
            keys.extend(a.key for a, _ in step.chosen)
            losses.append(self._run_step(step, phase))
            self.state.step += 1
            n_images += step.x.shape[0]
        if self.cuda:
            torch.cuda.synchronize(self.device)
        elapsed = time.perf_counter() - t0
        stats = self._allreduce(torch.tensor([sum(losses), len(losses), n_images],
                                             dtype=torch.float64))
        return {"loss": float(stats[0] / max(stats[1], 1.0)), "lr": float(lr),
                "beta": float(beta), "images_per_s": float(stats[2]) / max(elapsed, 1e-9),
                "train_time_s": elapsed, "steps": float(len(losses)),
                "arch_digest": _arch_digest(keys)}

    def _plan_step(self, index: int, phase: Phase, x: torch.Tensor,
                   y: torch.Tensor) -> _Step:
        """LR and β at this global step (set on the optimizer), the step's subnets (drawn
        from ``(seed, step)``, the same on every rank), and the batch on the device at the
        step's resolution."""
        from ofa_platform.train.eps import schedule_beta
        from ofa_platform.train.lr import schedule_lr
        from ofa_platform.train.sampling import sample_step

        total_batch = self.cfg.batch_size * self.world
        spe = self.steps_per_epoch
        lr = schedule_lr(self.schedule, index, spe, total_batch)
        beta = schedule_beta(self.schedule, index, spe, total_batch)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        sample = sample_step(phase, self.phase_space, seed=self.cfg.seed, global_step=index)
        chosen = list(zip(sample.archs, sample.full_model))
        if beta == 0.0:  # subnets would add zero gradient: skip their compute
            chosen = [c for c in chosen if c[1]] or chosen[:1]
        return _Step(index=index, lr=lr, beta=beta, x=self._to_resolution(x, sample.resolution),
                     y=y.to(self.device, non_blocking=True), chosen=chosen)

    def _to_resolution(self, x: torch.Tensor, r: int) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if x.shape[-1] != r:
            x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False,
                              antialias=True)
        return x.contiguous(memory_format=torch.channels_last) if self.cuda else x

    def _run_step(self, step: _Step, phase: Phase) -> float:
        """Forward/backward every subnet of the step (all but the last under ``no_sync``,
        so one all-reduce per step), then one optimizer step; returns the mean loss."""
        from ofa_platform.train.modes import get_distillation

        mode = get_distillation(phase.distillation)
        self.optimizer.zero_grad(set_to_none=True)
        soft_targets = self._teacher_logits(step.x)
        total = 0.0
        for j, (arch, is_full) in enumerate(step.chosen):
            logits, loss = self._subnet_loss(step, arch, is_full, soft_targets,
                                             last=j == len(step.chosen) - 1, mode=mode.name)
            if mode.full_model_teaches and is_full:
                soft_targets = logits.detach()
            self.scaler.scale(loss * (1.0 if is_full else step.beta)).backward()
            total += float(loss.detach())
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return total / len(step.chosen)

    def _teacher_logits(self, x: torch.Tensor) -> torch.Tensor | None:
        if self.teacher is None:
            return None
        with torch.no_grad(), self._autocast():
            return self.teacher(x).float()

    def _subnet_loss(self, step: _Step, arch: ArchConfig, is_full: bool,
                     soft_targets: torch.Tensor | None, *, last: bool,
                     mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        """One subnet's logits and loss; dropout is passed to the forward (the full model
        only under ``dropout_full_model_only``), never set on the module."""
        from ofa_platform.train.losses import subnet_loss

        sched = self.schedule
        self.supernet.set_active(arch)
        p = sched.dropout if is_full or not sched.dropout_full_model_only else 0.0
        with self._sync(last), self._autocast():
            logits = self.model(step.x, dropout=p).float()
            loss = subnet_loss(mode, logits, step.y, smoothing=sched.label_smoothing,
                               teacher_logits=soft_targets, weight=sched.distillation_weight,
                               temperature=sched.distillation_temperature,
                               is_full_model=is_full)
        return logits, loss

    def _sync(self, last: bool) -> AbstractContextManager[Any]:
        no_sync = getattr(self.model, "no_sync", None)
        return nullcontext() if last or no_sync is None else no_sync()

    def _autocast(self) -> AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _allreduce(self, t: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        if self.world > 1 and dist.is_initialized():
            moved = t.to(self.device)
            dist.all_reduce(moved)
            return moved.cpu()
        return t

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict[str, float]:
        """BN recalibration on the same training images on every rank, then top-1 of the
        smallest, middle and largest subnet on this rank's shard of the validation split,
        combined across ranks weighted by shard size."""
        from ofa_platform.evaluation import evaluate_top1, recalibrate_bn

        out: dict[str, float] = {}
        for name, arch in eval_archs(self.space).items():
            recal: list[torch.Tensor] = []
            n = 0
            for x, _ in self._batches(epoch, True, arch.r, 0, 1):
                recal.append(x)
                n += x.shape[0]
                if n >= self.cfg.recal_images:
                    break
            subnet = recalibrate_bn(self.supernet, arch, recal, self.device)
            val = []
            for x, y in self._batches(epoch, False, arch.r, self.rank, self.world):
                val.append((x, y))
                if self.cfg.val_limit and len(val) * self.cfg.batch_size >= self.cfg.val_limit:
                    break
            count = sum(int(y.shape[0]) for _, y in val)
            acc = evaluate_top1(subnet, val, self.device) if count else 0.0
            s = self._allreduce(torch.tensor([acc * count, count], dtype=torch.float64))
            out[f"acc_{name}"] = float(s[0] / max(s[1], 1.0))
        self.supernet.set_active(self.supernet.space.largest())
        return out

    # ----------------------------------------------------------------- driver of phases
    def run(self) -> list[dict[str, Any]]:
        """Train every remaining epoch; returns rank 0's reported metrics (plain runs)."""
        sched = self.schedule
        reported: list[dict[str, Any]] = []
        for epoch in range(self.state.epoch, sched.total_epochs):
            index = sched.phase_index_at(epoch)
            phase = sched.phases[index]
            if self.optimizer is None or self.state.started_phase < index:
                self.start_phase(index)
            t0 = time.perf_counter()
            metrics = self.train_epoch(epoch, phase)
            if self.stream is not None and epoch + 1 < sched.total_epochs:
                self.stream.start(epoch + 1)  # streams while this epoch is evaluated
            metrics.update(self.evaluate(epoch))
            self.state.epoch = epoch + 1
            metrics.update(epoch=float(epoch + 1), phase_index=float(index),
                           phase=phase.name, epoch_time_s=time.perf_counter() - t0,
                           resumed_from=float(self.state.resumed_from),
                           epochs_total=float(sched.total_epochs),
                           global_step=float(self.state.step), **self.cfg.extra_report)
            write = (lambda d, i=index: self._write_checkpoint(d, i)) if self.rank == 0 else None
            self.env.report(metrics, write)
            reported.append(metrics)
        return reported


def _cpu_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of ``model``'s state (a teacher snapshot)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@dataclass(frozen=True)
class WorkerEnv:
    """Where a worker runs: its rank, device, the checkpoint to resume from, how to wrap the
    model (DDP under Ray) and how to report an epoch. Ray Train supplies these in
    :func:`train_loop_per_worker`; a plain single-process run supplies its own (the same loop
    without Ray, for the Ray-vs-plain benchmark and CPU determinism tests).

    ``report(metrics, write)``: ``write`` (rank 0 only) fills a directory with the epoch's
    checkpoint; the environment owns that directory's lifetime (a ``TemporaryDirectory``
    around ``ray.train.report``, which persists its own copy).
    """

    rank: int
    world_size: int
    device: torch.device
    checkpoint_dir: str | None
    wrap_model: Callable[[nn.Module], nn.Module]
    report: Callable[[dict[str, Any], Callable[[str], None] | None], None]


def plain_env(device: str | torch.device = "cpu", checkpoint_dir: str | None = None,
              report: Callable[[dict[str, Any], str | None], None] | None = None) -> WorkerEnv:
    """A single process without Ray or DDP. ``report(metrics, directory)`` (default: drop)
    sees each epoch's checkpoint directory, which is removed once it returns."""
    def deliver(metrics: dict[str, Any], write: Callable[[str], None] | None) -> None:
        if report is None:
            return
        if write is None:
            report(metrics, None)
            return
        with tempfile.TemporaryDirectory(prefix="ofa_ckpt_") as d:
            write(d)
            report(metrics, d)

    return WorkerEnv(rank=0, world_size=1, device=torch.device(device),
                     checkpoint_dir=checkpoint_dir, wrap_model=lambda m: m, report=deliver)


def run_plain(cfg: EngineConfig, env: WorkerEnv | None = None) -> list[dict[str, Any]]:
    """Run the whole schedule in this process (no Ray); returns the per-epoch metrics."""
    return _Worker(cfg, env or plain_env()).run()


def _ray_train_loop(cfg: EngineConfig) -> None:
    """The worker under Ray Train: restore from ``ray.train.get_checkpoint()`` (inside
    ``as_directory``, which hands a local path or a downloaded copy and cleans it up), and
    report each epoch's checkpoint from a ``TemporaryDirectory`` (Ray persists its copy)."""
    import ray.train
    import ray.train.torch
    from ray.train import Checkpoint

    ctx = ray.train.get_context()

    def wrap(model: nn.Module) -> nn.Module:
        return ray.train.torch.prepare_model(
            model, move_to_device=False,
            parallel_strategy_kwargs={"find_unused_parameters": True,
                                      "broadcast_buffers": False})

    def report(metrics: dict[str, Any], write: Callable[[str], None] | None) -> None:
        if write is None:
            ray.train.report(metrics)
            return
        with tempfile.TemporaryDirectory(prefix="ofa_ckpt_") as d:
            write(d)
            ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))

    def env(directory: str | None) -> WorkerEnv:
        return WorkerEnv(rank=ctx.get_world_rank(), world_size=ctx.get_world_size(),
                         device=ray.train.torch.get_device(), checkpoint_dir=directory,
                         wrap_model=wrap, report=report)

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        _Worker(cfg, env(None)).run()
        return
    with checkpoint.as_directory() as directory:  # only read while the worker is built
        worker = _Worker(cfg, env(directory))
    worker.run()


def _amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """Mixed precision on CUDA only: CPU autocast is slower than fp32 for these convs."""
    if device.type != "cuda" or mode == "off":
        return None
    if mode == "fp16":
        return torch.float16
    if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train entry point: ``config["engine"]`` is an :class:`EngineConfig`."""
    cfg: EngineConfig = config["engine"]
    torch.set_num_threads(max(1, int(config.get("threads", torch.get_num_threads()))))
    _ray_train_loop(cfg)
