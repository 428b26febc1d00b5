"""Supernet checkpoints: ours (safe to load with ``weights_only=True``) and OFA's layout.

Our file is ``{"format": FORMAT, "version": 1, "spec": <create_supernet kwargs>,
"state_dict": ..., "extra": <plain data>}``: only tensors and plain Python values, so
``torch.load(weights_only=True)`` reads it and nothing is unpickled as code.

OFA and CompOFA publish ``torch.save({"state_dict": ...})`` with their own module names
(``first_conv.``, ``blocks.N.conv.inverted_bottleneck.conv.conv.weight``,
``...depth_conv.conv.7to5_matrix``, ``final_expand_layer.``, ``classifier.linear.``; older files
say ``mobile_inverted_conv`` for ``conv``). :func:`ofa_key` maps each of our keys to OFA's, so
loading and writing that layout is a renaming plus shape checks. CompOFA files carry no
kernel-transform matrices; those load as identity (a plain centre crop).
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from search_spaces.errors import CheckpointError
from search_spaces.supernet import Supernet

__all__ = ["FORMAT", "OFA_LAYOUT", "CheckpointError", "save_supernet", "load_supernet",
           "weights_fingerprint",
           "load_ofa_checkpoint", "save_ofa_checkpoint", "load_any_checkpoint",
           "load_checkpoint", "LoadedCheckpoint", "checkpoint_format", "ofa_key",
           "resnet_ofa_key", "ofa_state_dict", "load_weights_only"]

FORMAT = "ofa-platform-supernet"
OFA_LAYOUT = "ofa"  # what checkpoint_format calls an OFA/CompOFA-published file
_VERSION = 1
_OFA_TOP_KEYS = ("first_conv.", "final_expand_layer.", "feature_mix_layer.", "classifier.",
                 "input_stem.")


_STATIC_BLOCK = {  # the fixed first block (OFA: a static MBConvLayer)
    "dw_conv.": "conv.depth_conv.conv.",
    "dw_bn.": "conv.depth_conv.bn.",
    "project_conv.": "conv.point_linear.conv.",
    "project_bn.": "conv.point_linear.bn.",
}
_DYNAMIC_BLOCK = {  # the elastic slots (OFA: DynamicMBConvLayer, whose ops nest one level more)
    "expand_conv.": "conv.inverted_bottleneck.conv.conv.",
    "expand_bn.": "conv.inverted_bottleneck.bn.bn.",
    "dw_conv.weight": "conv.depth_conv.conv.conv.weight",
    "dw_bn.": "conv.depth_conv.bn.bn.",
    "se.": "conv.depth_conv.se.fc.",
    "project_conv.": "conv.point_linear.conv.conv.",
    "project_bn.": "conv.point_linear.bn.bn.",
}
_TOP = {
    "stem.": "first_conv.",
    "head.final_expand.": "final_expand_layer.",
    "head.feature_mix.": "feature_mix_layer.",
    "classifier.": "classifier.linear.",
}
_MATRIX = re.compile(r"dw_conv\.matrix_(\d+)to(\d+)$")
_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)$")


def ofa_key(key: str) -> str:
    """OFA's name for our state-dict ``key`` (``blocks.0`` is the static first block)."""
    m = _BLOCK.match(key)
    if m:
        index, rest = int(m.group(1)), m.group(2)
        mm = _MATRIX.match(rest)
        if mm:
            return f"blocks.{index}.conv.depth_conv.conv.{mm.group(1)}to{mm.group(2)}_matrix"
        table = _STATIC_BLOCK if index == 0 else _DYNAMIC_BLOCK
        for ours, theirs in table.items():
            if rest.startswith(ours):
                return f"blocks.{index}.{theirs}{rest[len(ours):]}"
        raise KeyError(key)
    for ours, theirs in _TOP.items():
        if key.startswith(ours):
            return theirs + key[len(ours):]
    raise KeyError(key)


_RESNET_STEM = {"0": "input_stem.0.", "1": "input_stem.1.conv.", "2": "input_stem.2."}
_RESNET_BLOCK = {"conv1": "conv1", "conv2": "conv2", "conv3": "conv3", "down": "downsample"}
_RESNET_PART = re.compile(r"(?:stem\.(conv|bn)(\d)|blocks\.(\d+)\.(conv|bn|down_conv|down_bn)"
                          r"(\d?))\.(.+)$")


def resnet_ofa_key(key: str) -> str:
    """OFA's ``OFAResNets`` name for our ResNet50D state-dict ``key`` (its dynamic layout:
    ``input_stem.1.conv.conv.conv.weight``, ``blocks.N.conv1.bn.bn.weight``,
    ``blocks.N.downsample.conv.conv.weight``, ``classifier.linear.linear.weight``)."""
    if key.startswith("classifier."):
        return "classifier.linear.linear." + key[len("classifier."):]
    m = _RESNET_PART.match(key)
    if not m:
        raise KeyError(key)
    stem_kind, stem_i, block, kind, conv_i, rest = m.groups()
    if stem_kind is not None:
        prefix, kind = _RESNET_STEM[stem_i], stem_kind
    else:
        part = "down" if kind.startswith("down") else f"conv{conv_i}"
        prefix, kind = f"blocks.{block}.{_RESNET_BLOCK[part]}.", kind.removeprefix("down_")
    return f"{prefix}{kind}.{kind}.{rest}"


def _resnet_static_key(key: str) -> str:
    """The same weight in OFA's static (``ResNets`` / published) layout, one level less deep:
    ``...conv.conv.weight`` -> ``...conv.weight``, ``bn.bn.`` -> ``bn.``, ``linear.linear.`` ->
    ``linear.`` (what ``OFAResNets.load_state_dict`` renames back)."""
    key = key.replace("linear.linear.", "linear.").replace("bn.bn.", "bn.")
    return key[: -len("conv.conv.weight")] + "conv.weight" if key.endswith(
        "conv.conv.weight") else key


def _key_fn(net: Supernet) -> Any:
    return resnet_ofa_key if net.plan.family == "resnet" else ofa_key


def _normalise(key: str) -> str:
    """OFA key in the current spelling: no DataParallel prefix, ``conv`` for
    ``mobile_inverted_conv``."""
    key = key.removeprefix("module.")
    return re.sub(r"^(blocks\.\d+)\.mobile_inverted_conv\.", r"\1.conv.", key)


def ofa_state_dict(supernet: Supernet) -> dict[str, torch.Tensor]:
    """The supernet's state dict under OFA's names (``conv.`` style, tensors cloned)."""
    key = _key_fn(supernet)
    return {key(k): v.detach().clone() for k, v in supernet.state_dict().items()}


def _atomic_save(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` to a temporary sibling, then rename: a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_ofa_checkpoint(path: str | os.PathLike[str], supernet: Supernet,
                        legacy_names: bool = False, with_matrices: bool = True) -> Path:
    """Write ``{"state_dict": ...}`` in OFA's layout. ``legacy_names`` uses the older
    ``mobile_inverted_conv`` spelling; ``with_matrices=False`` drops the kernel-transform
    matrices, as CompOFA's files do. Used to produce such files for tests and benchmarks."""
    sd = ofa_state_dict(supernet)
    if not with_matrices:
        sd = {k: v for k, v in sd.items() if not k.endswith("_matrix")}
    if legacy_names:
        sd = {re.sub(r"^(blocks\.\d+)\.conv\.", r"\1.mobile_inverted_conv.", k): v
              for k, v in sd.items()}
    return _atomic_save({"state_dict": sd}, path)


def save_supernet(path: str | os.PathLike[str], supernet: Supernet,
                  extra: dict[str, Any] | None = None) -> Path:
    """Write our checkpoint atomically; ``extra`` must be plain data (numbers, strings,
    lists, dicts, tensors) so the file stays loadable with ``weights_only=True``."""
    state = {k: v.detach().cpu() for k, v in supernet.state_dict().items()}
    return _atomic_save({"format": FORMAT, "version": _VERSION, "spec": dict(supernet.spec),
                         "state_dict": state, "extra": dict(extra or {})}, path)


def load_weights_only(path: str | os.PathLike[str],
                      map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` without torch's warnings on stderr.

    The weights-only unpickler warns about a pickle protocol it was not written for (any
    file ``pickle.dump`` wrote) before it fails; the command then prints its one error line
    after a two-line warning meant for torch's developers. The load's outcome (a value or an
    exception) is unchanged.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, map_location=map_location, weights_only=True)


def weights_fingerprint(supernet: Supernet) -> str:
    """What a supernet computes, as 16 hex digits: sha256 of its spec and weights. Not of its
    file: the file also holds provenance (the training run's MLflow id), so two runs that
    train the same weights (same seed, same recipe) write different files; keyed by weights,
    the second one's subnet accuracies come from the first one's cache. Hashed from the
    loaded supernet, so a search does not read its checkpoint a second time."""
    import hashlib
    import json

    h = hashlib.sha256(json.dumps(supernet.spec, sort_keys=True, default=str).encode())
    state = supernet.state_dict()
    for key in sorted(state):
        v = state[key].detach().cpu().contiguous()
        h.update(f"{key}:{v.dtype}:{tuple(v.shape)}".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _read(path: str | os.PathLike[str], map_location: str | torch.device) -> Any:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p}: no such file")
    try:
        return load_weights_only(p, map_location)
    except Exception as exc:  # noqa: BLE001 - the unpickler raises KeyError, TypeError, ...
        # on text or foreign files: whatever it is, the user named a file that is not one
        text = str(exc).strip()
        first = text.splitlines()[0].split(". ")[0] if text else type(exc).__name__
        raise CheckpointError(
            f"checkpoint {p}: not a readable PyTorch checkpoint ({first})") from None


def load_supernet(path: str | os.PathLike[str],
                  map_location: str | torch.device = "cpu") -> tuple[Supernet, dict[str, Any]]:
    """Rebuild the supernet written by :func:`save_supernet`; returns it and ``extra``."""
    data = _read(path, map_location)
    if checkpoint_format(data) != FORMAT:
        raise CheckpointError(f"checkpoint {path}: not an ofa-platform supernet checkpoint"
                        + (" (it looks like an OFA file; use load_ofa_checkpoint)"
                           if checkpoint_format(data) == OFA_LAYOUT else ""))
    _check_checkpoint_content(path, data)
    return _from_ours(data, str(path))


def _from_ours(data: dict[str, Any], where: str) -> tuple[Supernet, dict[str, Any]]:
    from search_spaces.registry import create_supernet

    try:
        net = create_supernet(**data["spec"])
    except (TypeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {where}: bad supernet spec ({exc})") from None
    _load_checked(net, data["state_dict"], where)
    return net, dict(data.get("extra") or {})


def _describe(net: Supernet) -> str:
    return f"space {net.space.name} at width {net.plan.width_mult:g}"


def _load_checked(net: Supernet, state: dict[str, Any], where: str) -> None:
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise CheckpointError(f"checkpoint {where}: does not match {_describe(net)} "
                        f"({len(missing)} missing, {len(unexpected)} unexpected keys, e.g. "
                        f"{(missing or unexpected)[0]})")
    _check_shapes(net, {k: (k, state[k]) for k in own}, where)
    net.load_state_dict(state)


def _check_shapes(net: Supernet, named: dict[str, tuple[str, Any]], where: str) -> None:
    own = net.state_dict()
    for k, (their_name, v) in named.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"checkpoint {where}: {their_name} is not a tensor")
        if v.shape != own[k].shape:
            raise CheckpointError(
                f"checkpoint {where}: {their_name} has shape {tuple(v.shape)}, "
                f"{_describe(net)} expects {tuple(own[k].shape)} (another space or width?)")


def load_ofa_checkpoint(supernet: Supernet,
                        path_or_state_dict: str | os.PathLike[str] | dict[str, Any]) -> Supernet:
    """Load an OFA/CompOFA-published checkpoint into ``supernet`` (in place, returned).

    Accepts ``{"state_dict": ...}`` or a bare state dict, either key style. Missing
    kernel-transform matrices become identity; matrices in the file for a supernet without
    them are accepted only if they are identity (otherwise the subnets would differ).
    """
    state, where = _ofa_state(path_or_state_dict)
    net_sd = supernet.state_dict()
    named = _match_keys(supernet, state, where)
    _check_shapes(supernet, named, where)
    new_state = {}
    for k, v in net_sd.items():
        if k in named:
            new_state[k] = named[k][1].to(dtype=v.dtype)
        elif _MATRIX.search(k):
            new_state[k] = torch.eye(v.shape[0], dtype=v.dtype)
        else:
            new_state[k] = v
    supernet.load_state_dict(new_state)
    return supernet


def _ofa_state(path_or_state_dict: str | os.PathLike[str] | dict[str, Any]
               ) -> tuple[dict[str, Any], str]:
    """The file's (or dict's) state dict with OFA's key style normalised, and how to name
    it in errors; an ofa-platform checkpoint or anything without a state dict is refused."""
    if isinstance(path_or_state_dict, dict):
        data: Any = path_or_state_dict
        where = "<state dict>"
    else:
        where = str(path_or_state_dict)
        data = _read(path_or_state_dict, "cpu")
    if isinstance(data, dict) and data.get("format") == FORMAT:
        raise CheckpointError(
            f"checkpoint {where}: is an ofa-platform checkpoint; use load_supernet")
    state = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(k, str) for k in state):
        raise CheckpointError(f"checkpoint {where}: not an OFA checkpoint (no state_dict)")
    return {_normalise(k): v for k, v in state.items()}, where


def _match_keys(supernet: Supernet, state: dict[str, Any],
                where: str) -> dict[str, tuple[str, Any]]:
    """Our state-dict key -> (the file's key, tensor). Every key of ours but the
    kernel-transform matrices and BN counters must be there, no key of theirs left over;
    their matrices for a space without them must be identity (else subnets would differ)."""
    key_fn = _key_fn(supernet)
    wanted = {key_fn(k): k for k in supernet.state_dict()}
    # ResNet50D files may use OFA's static layout (one level less deep); accept either
    static_of = ({t: _resnet_static_key(t) for t in wanted}
                 if supernet.plan.family == "resnet" else {})
    alias = set(static_of.values())
    named, missing = {}, []
    for theirs, ours in wanted.items():
        static = static_of.get(theirs)
        if theirs in state:
            named[ours] = (theirs, state[theirs])
        elif static is not None and static in state:
            named[ours] = (static, state[static])
        elif not (theirs.endswith("_matrix") or theirs.endswith("num_batches_tracked")):
            missing.append(theirs)
    extra_keys = [k for k in state if k not in wanted and k not in alias]
    foreign_matrices = [k for k in extra_keys if k.endswith("_matrix")]
    extra_keys = [k for k in extra_keys
                  if not k.endswith("_matrix") and not k.endswith("num_batches_tracked")]
    if missing or extra_keys:
        example = (missing or extra_keys)[0]
        raise CheckpointError(f"checkpoint {where}: does not match {_describe(supernet)} "
                              f"({len(missing)} missing, {len(extra_keys)} unexpected keys, "
                              f"e.g. {example})")
    for k in foreign_matrices:
        m = state[k]
        if not (isinstance(m, torch.Tensor) and m.dim() == 2 and m.shape[0] == m.shape[1]
                and torch.equal(m.float(), torch.eye(m.shape[0]))):
            raise CheckpointError(f"checkpoint {where}: has trained kernel-transform matrices "
                                  f"but space {supernet.space.name} has none; load it into a "
                                  "space with kernel_transform (e.g. ofa_mbv3)")
    return named


def _check_checkpoint_content(path: str | os.PathLike[str], data: Any) -> None:
    """A file that unpickles to something other than a checkpoint (a list, a bare tensor, a
    dict without tensors) is a :class:`CheckpointError`: it used to be handed on as if it were a
    path, and failed far from the cause."""
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path}: holds a {type(data).__name__}, not a checkpoint "
                        "(a dict with a state_dict)")
    if data.get("format") == FORMAT:
        if not isinstance(data.get("state_dict"), dict) or not isinstance(data.get("spec"), dict):
            raise CheckpointError(
                f"checkpoint {path}: an {FORMAT} file without its state_dict or spec")
        return
    state = data.get("state_dict", data)
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor)
                                              for v in state.values()):
        raise CheckpointError(
            f"checkpoint {path}: holds no tensors (neither ours nor OFA's layout)")


def checkpoint_format(data: Any) -> str | None:
    """What a loaded checkpoint file holds, from its content: :data:`FORMAT` for ours (it says
    so), :data:`OFA_LAYOUT` for an OFA/CompOFA file (``{"state_dict": ...}`` or a bare state
    dict whose keys are OFA's module names), None for anything else."""
    if not isinstance(data, dict):
        return None
    if data.get("format") == FORMAT:
        return FORMAT
    state = data.get("state_dict", data)
    if isinstance(state, dict) and any(
            isinstance(k, str) and (k.startswith(_OFA_TOP_KEYS) or k.startswith("blocks."))
            for k in state):
        return OFA_LAYOUT
    return None


@dataclass(frozen=True)
class LoadedCheckpoint:
    """A supernet read from a file, the file's format, and (ours only) its ``extra``."""

    supernet: Supernet
    format: str
    extra: dict[str, Any] = field(default_factory=dict)


def load_checkpoint(path: str | os.PathLike[str], *, space: str | None = None,
                    width_mult: float | None = None, n_classes: int | None = None,
                    small_input: bool = False) -> LoadedCheckpoint:
    """A supernet from our checkpoint or an OFA/CompOFA file, told apart by content; the file
    is read once.

    For our files the spec inside decides, and a given ``space``/``width_mult`` must agree
    with it. For OFA files ``space`` is required; ``n_classes`` defaults to the classifier's
    size in the file and ``width_mult`` to 1.0.
    """
    from search_spaces.registry import create_supernet

    data = _read(path, "cpu")
    _check_checkpoint_content(path, data)
    kind = checkpoint_format(data)
    if kind == FORMAT:
        net, extra = _from_ours(data, str(path))
        if space is not None and space != net.space.name:
            raise CheckpointError(f"checkpoint {path}: holds space {net.space.name}, not {space}")
        if width_mult is not None and abs(width_mult - net.plan.width_mult) > 1e-9:
            raise CheckpointError(f"checkpoint {path}: holds width {net.plan.width_mult:g}, "
                            f"not {width_mult:g}")
        return LoadedCheckpoint(net, FORMAT, extra)
    if kind is None:
        raise CheckpointError(f"checkpoint {path}: neither an ofa-platform supernet checkpoint nor "
                        "an OFA/CompOFA state dict")
    if space is None:
        raise CheckpointError(f"checkpoint {path}: an OFA-layout file needs --space")
    if n_classes is None:
        state = data.get("state_dict", data) if isinstance(data, dict) else {}
        w = None
        if isinstance(state, dict):
            w = state.get("classifier.linear.weight", state.get("classifier.linear.linear.weight"))
        n_classes = int(w.shape[0]) if isinstance(w, torch.Tensor) and w.dim() == 2 else 1000
    try:
        net = create_supernet(space, width_mult=1.0 if width_mult is None else width_mult,
                              n_classes=n_classes, small_input=small_input)
    except ValueError as exc:  # bad width or class count given by the user
        raise CheckpointError(str(exc)) from None
    return LoadedCheckpoint(load_ofa_checkpoint(net, data), OFA_LAYOUT)


def load_any_checkpoint(path: str | os.PathLike[str], *, space: str | None = None,
                        width_mult: float | None = None, n_classes: int | None = None,
                        small_input: bool = False) -> Supernet:
    """The supernet of :func:`load_checkpoint` (either format)."""
    return load_checkpoint(path, space=space, width_mult=width_mult, n_classes=n_classes,
                           small_input=small_input).supernet
