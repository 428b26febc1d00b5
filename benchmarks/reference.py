"""The reference OFA implementation, installed aside and driven the way its authors drive it.

Speed claims against the authors' code are only honest if their code runs as it ships. This
module installs ``ofa`` from the package index with ``--no-deps`` into a git-ignored directory
(so it can never replace our torch), puts that directory on ``sys.path`` and builds the
reference's objects: the elastic MobileNetV3 supernet, its static teacher, its BN
recalibration, and its tutorial evolutionary search with its own latency-table and
accuracy-predictor classes. Nothing of the reference is patched; where the shipped code would
download from the web, the local copies of the same files are handed to it instead (no network
here). Its tutorial package's ``__init__`` imports the model zoo (which needs ``gdown``, a
download tool), so the three tutorial modules are loaded from their files directly.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import io
import random
import shutil
import subprocess
import sys
import tempfile
import types
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "build_resnet_supernet",
    "set_active_resnet",
    "extract_resnet",
    "count_resnet",
    "recalibrate_and_evaluate_resnet",
    "ReferenceResNetTrainer",
    "REFERENCE_REQUIREMENT",
    "REFERENCE_VERSION",
    "RUNTIME_REQUIREMENTS",
    "ReferenceUnavailable",
    "Reference",
    "ReferenceTrainer",
    "ReferenceSearch",
    "default_reference_dir",
    "ensure_reference",
    "is_installed",
    "load_reference",
]

REFERENCE_VERSION = "0.1.0.post202307202001"
REFERENCE_REQUIREMENT = f"ofa=={REFERENCE_VERSION}"
# The reference imports tqdm at module level (training loop, evolution finder); our venv has
# none, so it goes into the same aside directory, also without dependencies.
RUNTIME_REQUIREMENTS = (REFERENCE_REQUIREMENT, "tqdm==4.70.1")


class ReferenceUnavailable(RuntimeError):
    """The reference could not be installed or imported (no index, wrong Python, ...)."""


def default_reference_dir(repo_root: Path) -> Path:
    """``benchmarks/.ref`` under the checkout: git-ignored, next to the harness that uses it."""
    return repo_root / "benchmarks" / ".ref"


def is_installed(target: Path) -> bool:
    """True when ``target`` holds exactly the pinned reference version and its tqdm."""
    dist = target / f"ofa-{REFERENCE_VERSION}.dist-info"
    return (target / "ofa" / "__init__.py").is_file() and dist.is_dir() and (
        target / "tqdm" / "__init__.py"
    ).is_file()


def ensure_reference(target: Path, *, python: str | None = None, timeout_s: float = 600.0) -> Path:
    """Install the pinned reference into ``target`` unless it is already there.

    pip writes into a temporary sibling directory that is renamed into place only when the
    install succeeded, so an interrupted install never leaves a half-populated ``target``.
    """
    target = Path(target)
    if is_installed(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ref-staging-", dir=target.parent))
    cmd = [python or sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
           "--disable-pip-version-check", "--target", str(staging), *RUNTIME_REQUIREMENTS]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise ReferenceUnavailable(f"pip could not install {REFERENCE_REQUIREMENT}: {last}")
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except subprocess.TimeoutExpired as exc:
        raise ReferenceUnavailable(f"installing {REFERENCE_REQUIREMENT} timed out") from exc
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    if not is_installed(target):
        raise ReferenceUnavailable(f"{target} does not hold {REFERENCE_REQUIREMENT} after pip")
    return target


def _load_file_module(name: str, path: Path) -> types.ModuleType:
    """Import one source file as module ``name`` without running its package's ``__init__``."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ReferenceUnavailable(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class Reference:
    """Handles on the reference's classes and functions, loaded from one install directory."""

    root: Path
    OFAMobileNetV3: Any
    MobileNetV3Large: Any
    set_running_statistics: Any
    cross_entropy_loss_with_soft_target: Any
    cross_entropy_with_label_smoothing: Any
    EvolutionFinder: Any
    LatencyEstimator: Any
    LatencyTable: Any
    AccuracyPredictor: Any


def load_reference(target: Path) -> Reference:
    """Put ``target`` on ``sys.path`` (once) and import the reference's pieces from it."""
    target = Path(target).resolve()
    if not is_installed(target):
        raise ReferenceUnavailable(f"{REFERENCE_REQUIREMENT} is not installed in {target}")
    if str(target) not in sys.path:
        sys.path.append(str(target))
    try:
        nets = importlib.import_module("ofa.imagenet_classification.elastic_nn.networks")
        static = importlib.import_module("ofa.imagenet_classification.networks")
        bn_utils = importlib.import_module("ofa.imagenet_classification.elastic_nn.utils")
        utils = importlib.import_module("ofa.utils")
        tutorial = target / "ofa" / "tutorial"
        evo = _load_file_module("_ofa_reference_evolution_finder",
                                tutorial / "evolution_finder.py")
        lat = _load_file_module("_ofa_reference_latency_table", tutorial / "latency_table.py")
        acc = _load_file_module("_ofa_reference_accuracy_predictor",
                                tutorial / "accuracy_predictor.py")
    except ImportError as exc:
        raise ReferenceUnavailable(f"cannot import the reference from {target}: {exc}") from exc
    return Reference(
        root=target,
        OFAMobileNetV3=nets.OFAMobileNetV3,
        MobileNetV3Large=static.MobileNetV3Large,
        set_running_statistics=bn_utils.set_running_statistics,
        cross_entropy_loss_with_soft_target=utils.cross_entropy_loss_with_soft_target,
        cross_entropy_with_label_smoothing=utils.cross_entropy_with_label_smoothing,
        EvolutionFinder=evo.EvolutionFinder,
        LatencyEstimator=lat.LatencyEstimator,
        LatencyTable=lat.LatencyTable,
        AccuracyPredictor=acc.AccuracyPredictor,
    )


# --------------------------------------------------------------------------- supernet


def build_supernet(ref: Reference, *, width_mult: float = 1.0, n_classes: int = 1000,
                   dropout: float = 0.1) -> Any:
    """The reference's ``ofa_mbv3_d234_e346_k357`` supernet with OFA's BN settings."""
    return ref.OFAMobileNetV3(
        n_classes=n_classes, bn_param=(0.1, 1e-5), dropout_rate=dropout, width_mult=width_mult,
        ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4],
    )


def build_teacher(ref: Reference, *, width_mult: float = 1.0, n_classes: int = 1000) -> Any:
    """The static largest network OFA's training script distils from (kernel 7, ratio 6, d 4)."""
    return ref.MobileNetV3Large(
        n_classes=n_classes, bn_param=(0.1, 1e-5), dropout_rate=0.0, width_mult=width_mult,
        ks=7, expand_ratio=6, depth_param=4,
    )


def set_active(net: Any, ofa_arch: dict[str, Any]) -> None:
    """Activate an arch given in OFA's flat dict form (``ks``, ``e``, ``d``)."""
    net.set_active_subnet(ks=list(ofa_arch["ks"]), e=list(ofa_arch["e"]), d=list(ofa_arch["d"]))


def extract(net: Any, ofa_arch: dict[str, Any]) -> Any:
    """The reference's static subnet: ``set_active_subnet`` then ``get_active_subnet``."""
    set_active(net, ofa_arch)
    return net.get_active_subnet(preserve_weight=True)


def recalibrate_and_evaluate(ref: Reference, net: Any, ofa_arch: dict[str, Any],
                             recal_batches: Sequence[tuple[Any, Any]],
                             eval_batches: Iterable[tuple[Any, Any]]) -> float:
    """OFA's ``evaluate_ofa_subnet`` path: extract, ``set_running_statistics``, top-1 (%)."""
    import torch

    subnet = extract(net, ofa_arch)
    ref.set_running_statistics(subnet, recal_batches)
    subnet.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in eval_batches:
            pred = subnet(images).argmax(dim=1)
            correct += int((pred == labels).sum())
            total += int(labels.numel())
    return 100.0 * correct / max(total, 1)


class ReferenceTrainer:
    """One training step exactly as the reference's ``train_one_epoch`` does it.

    Teacher forward in train mode without gradients, its softmax as soft target; then for each
    of the step's subnets: activate, forward, ``kd_ratio * CE(soft) + CE(label smoothing 0.1)``,
    backward; one SGD step (Nesterov, momentum 0.9, weight decay 3e-5 except BN and biases, OFA's
    ``no_decay_keys="bn#bias"``). The subnets are handed in, so that ours and the reference
    train the very same archs.
    """

    def __init__(self, ref: Reference, *, n_classes: int = 1000, lr: float = 0.1,
                 kd_ratio: float = 1.0, seed: int = 0) -> None:
        import torch

        torch.manual_seed(seed)
        self.ref = ref
        self.net = build_supernet(ref, n_classes=n_classes)
        self.teacher = build_teacher(ref, n_classes=n_classes)
        self.kd_ratio = kd_ratio
        decay, no_decay = [], []
        for name, param in self.net.named_parameters():
            (no_decay if ("bn" in name or "bias" in name) else decay).append(param)
        self.optimizer = torch.optim.SGD(
            [{"params": decay, "weight_decay": 3e-5}, {"params": no_decay, "weight_decay": 0.0}],
            lr=lr, momentum=0.9, nesterov=True,
        )

    def step(self, images: Any, labels: Any, archs: Sequence[dict[str, Any]]) -> float:
        """Run one step over ``archs`` (OFA dicts); returns the mean loss of its subnets."""
        import torch
        import torch.nn.functional as F

        self.net.train()
        self.teacher.train()
        with torch.no_grad():
            soft_label = F.softmax(self.teacher(images).detach(), dim=1)
        self.net.zero_grad()
        losses = []
        for arch in archs:
            set_active(self.net, arch)
            output = self.net(images)
            loss = self.kd_ratio * self.ref.cross_entropy_loss_with_soft_target(
                output, soft_label
            ) + self.ref.cross_entropy_with_label_smoothing(output, labels, 0.1)
            loss.backward()
            losses.append(float(loss.detach()))
        self.optimizer.step()
        return sum(losses) / len(losses)


# --------------------------------------------------------------------------- search


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    with open(path) as fp:
        return yaml.safe_load(fp)


class ReferenceSearch:
    """The reference's tutorial ``EvolutionFinder`` with its ``LatencyTable`` and predictor.

    The shipped classes download their inputs in ``__init__`` (and the latency estimator calls
    ``yaml.load`` without a loader, which PyYAML 6 refuses), so they are constructed without
    their ``__init__`` and given the same files from disk; every method that runs during the
    search is the shipped one.
    """

    def __init__(self, ref: Reference, predictor_path: Path, lut_dir: Path,
                 resolutions: Sequence[int] = (160, 176, 192, 208, 224)) -> None:
        import torch

        self.ref = ref
        table = object.__new__(ref.LatencyTable)
        table.latency_tables = {}
        for r in resolutions:
            est = object.__new__(ref.LatencyEstimator)
            est.lut = _load_yaml(Path(lut_dir) / f"{r}_lookup_table.yaml")
            table.latency_tables[int(r)] = est
        self.latency = table
        predictor = ref.AccuracyPredictor(pretrained=False, device="cpu")
        state = torch.load(predictor_path, map_location="cpu", weights_only=True)
        predictor.model.load_state_dict(state)
        predictor.model.eval()
        self.predictor = predictor
        self.resolutions = tuple(int(r) for r in resolutions)

    def finder(self, target_ms: float, *, population: int, generations: int) -> Any:
        """A shipped ``EvolutionFinder`` for the Note10 constraint at ``target_ms``.

        Outside 15..60 ms the shipped constructor asks on stdin for another value, so such a
        target is refused here instead.
        """
        lo, hi = self.ref.EvolutionFinder.valid_constraint_range["note10"]
        if not lo <= target_ms <= hi:
            raise ValueError(f"the reference searches Note10 targets in {lo}..{hi} ms only, "
                             f"got {target_ms}")
        finder = self.ref.EvolutionFinder(
            "note10", target_ms, self.latency, self.predictor,
            population_size=population, max_time_budget=generations,
        )
        finder.arch_manager.resolutions = list(self.resolutions)
        return finder

    def search(self, targets: Sequence[float], *, population: int, generations: int,
               seed: int) -> list[dict[str, Any]]:
        """One independent search per target (the reference has no multi-target strategy).

        The reference draws from the global ``random`` and ``numpy`` generators; they are
        seeded here once per call. Its tqdm bars are silenced (written to a buffer).
        """
        import numpy as np

        random.seed(seed)
        np.random.seed(seed)
        results = []
        for target in targets:
            finder = self.finder(float(target), population=population, generations=generations)
            with contextlib.redirect_stderr(io.StringIO()):
                _, best = finder.run_evolution_search()
            acc, sample, latency = best
            arch = copy.deepcopy(sample)
            results.append({
                "target_ms": float(target),
                "accuracy": float(acc),
                "latency_ms": float(latency),
                "arch": {"ks": arch["ks"], "e": arch["e"], "d": arch["d"], "r": arch["r"][0]},
            })
        return results

    def predict(self, ofa_arch: dict[str, Any]) -> tuple[float, float]:
        """The reference's (accuracy, Note10 latency) of one arch, for cross-checking ours."""
        sample = {"ks": list(ofa_arch["ks"]), "e": list(ofa_arch["e"]),
                  "d": list(ofa_arch["d"]), "r": [int(ofa_arch["r"])]}
        acc = float(self.predictor.predict_accuracy([sample])[0])
        return acc, float(self.latency.predict_efficiency(sample))


# --------------------------------------------------------------------------- ResNet50D


def build_resnet_supernet(ref: Reference, *, n_classes: int = 1000, dropout: float = 0.0) -> Any:
    """The reference's ``OFAResNets`` as its model zoo builds ``ofa_resnet50``: depth 0/1/2,
    expand 0.2/0.25/0.35, width 0.65/0.8/1.0, OFA's BN settings."""
    nets = importlib.import_module("ofa.imagenet_classification.elastic_nn.networks")
    return nets.OFAResNets(
        n_classes=n_classes, bn_param=(0.1, 1e-5), dropout_rate=dropout,
        depth_list=[0, 1, 2], expand_ratio_list=[0.2, 0.25, 0.35],
        width_mult_list=[0.65, 0.8, 1.0],
    )


def set_active_resnet(net: Any, ofa_arch: dict[str, Any]) -> None:
    """Activate a ResNet50D arch given in OFA's dict form (``d``, ``e``, ``w``)."""
    net.set_active_subnet(d=list(ofa_arch["d"]), e=list(ofa_arch["e"]), w=list(ofa_arch["w"]))


def extract_resnet(net: Any, ofa_arch: dict[str, Any]) -> Any:
    """The reference's static ResNet subnet: ``set_active_subnet`` then ``get_active_subnet``."""
    set_active_resnet(net, ofa_arch)
    return net.get_active_subnet(preserve_weight=True)


def count_resnet(ref: Reference, net: Any, resolution: int) -> tuple[float, int]:
    """The reference's own counters: ``count_net_flops`` (MACs) and ``count_parameters``."""
    utils = importlib.import_module("ofa.utils")
    return (float(utils.count_net_flops(net, (1, 3, resolution, resolution))),
            int(utils.count_parameters(net)))


def recalibrate_and_evaluate_resnet(ref: Reference, net: Any, ofa_arch: dict[str, Any],
                                    recal_batches: Sequence[tuple[Any, Any]],
                                    eval_batches: Iterable[tuple[Any, Any]]) -> float:
    """The same path as :func:`recalibrate_and_evaluate` for ``OFAResNets``."""
    import torch

    subnet = extract_resnet(net, ofa_arch)
    ref.set_running_statistics(subnet, recal_batches)
    subnet.eval()
    correct = total = 0
    with torch.no_grad():
        for images, labels in eval_batches:
            correct += int((subnet(images).argmax(dim=1) == labels).sum())
            total += int(labels.numel())
    return 100.0 * correct / max(total, 1)


class ReferenceResNetTrainer(ReferenceTrainer):
    """:class:`ReferenceTrainer`'s step on ``OFAResNets``: the teacher is the reference's own
    static largest ResNet50D (``get_active_subnet`` of the full network; OFA publishes no
    ResNet training script, so its MobileNetV3 script's distillation is what is reproduced)."""

    def __init__(self, ref: Reference, *, n_classes: int = 1000, lr: float = 0.1,
                 kd_ratio: float = 1.0, seed: int = 0) -> None:
        import torch

        torch.manual_seed(seed)
        self.ref = ref
        self.net = build_resnet_supernet(ref, n_classes=n_classes, dropout=0.1)
        self.net.set_max_net()
        self.teacher = self.net.get_active_subnet(preserve_weight=True)
        self.kd_ratio = kd_ratio
        decay, no_decay = [], []
        for name, param in self.net.named_parameters():
            (no_decay if ("bn" in name or "bias" in name) else decay).append(param)
        self.optimizer = torch.optim.SGD(
            [{"params": decay, "weight_decay": 3e-5}, {"params": no_decay, "weight_decay": 0.0}],
            lr=lr, momentum=0.9, nesterov=True,
        )

    def step(self, images: Any, labels: Any, archs: Sequence[dict[str, Any]]) -> float:
        import torch
        import torch.nn.functional as F

        self.net.train()
        self.teacher.train()
        with torch.no_grad():
            soft_label = F.softmax(self.teacher(images).detach(), dim=1)
        self.net.zero_grad()
        losses = []
        for arch in archs:
            set_active_resnet(self.net, arch)
            output = self.net(images)
            loss = self.kd_ratio * self.ref.cross_entropy_loss_with_soft_target(
                output, soft_label
            ) + self.ref.cross_entropy_with_label_smoothing(output, labels, 0.1)
            loss.backward()
            losses.append(float(loss.detach()))
        self.optimizer.step()
        return sum(losses) / len(losses)
