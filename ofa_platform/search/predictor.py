"""OFA's accuracy predictor: an MLP over a one-hot encoding of the arch, for any space.

Encoding (OFA's layout, generalised): for every block slot a one-hot of its kernel, then for
every slot a one-hot of its expand ratio (slots a stage's depth leaves out are all zeros), then
a one-hot of the resolution bucket ``(r - base) // step``. The published ImageNet predictor
uses kernels (3,5,7), ratios (3,4,6), base 112, step 16, 8 buckets: 128 inputs. Features are
built for whole populations with numpy gathers and the MLP runs in numpy, because the search
calls it once per generation and torch's per-call overhead would dominate at 100 rows.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ofa_platform.errors import UserError
from ofa_platform.files import atomic_path
from ofa_platform.search.genes import GeneCodec
from search_spaces.arch import ArchConfig

__all__ = [
    "OneHotEncoding", "published_encoding", "default_encoding", "AccuracyPredictor",
    "load_predictor", "train_predictor", "single_thread", "kendall_tau", "PREDICTOR_FORMAT",
    "MIN_PREDICTOR_ARCHS",
]

#: Fewest subnets (with an accuracy each) a predictor is fit on: 80/20 split leaves one to test.
MIN_PREDICTOR_ARCHS = 5

PREDICTOR_FORMAT = "ofa-platform-predictor/1"


@dataclass(frozen=True)
class OneHotEncoding:
    """Which values each one-hot part covers."""

    kernels: tuple[int, ...]
    ratios: tuple[int, ...]
    res_base: int
    res_step: int
    res_bins: int

    def dim(self, n_slots: int) -> int:
        return n_slots * (len(self.kernels) + len(self.ratios)) + self.res_bins

    def check(self, codec: GeneCodec) -> None:
        """Every value the codec can produce must have a place in the encoding."""
        space = codec.space
        if not hasattr(space, "stages"):  # ResNet50D: per-slot kernels do not describe it
            raise UserError(f"a MobileNet-style predictor (kernels and ratios per slot) does "
                            f"not fit space {space.name}")
        bad_k = sorted({k for st in space.stages for k in st.kernels} - set(self.kernels))
        bad_e = sorted({e for st in space.stages for e in st.ratios} - set(self.ratios))
        bins = [(r - self.res_base) // self.res_step for r in codec.resolutions]
        bad_r = [r for r, b in zip(codec.resolutions, bins) if not 0 <= b < self.res_bins]
        problems = []
        if bad_k:
            problems.append(f"kernels {bad_k}")
        if bad_e:
            problems.append(f"ratios {bad_e}")
        if bad_r:
            problems.append(f"resolutions {bad_r}")
        if problems:
            raise UserError(f"the predictor's encoding has no place for {', '.join(problems)} "
                            f"of space {space.name}")

    def features(self, codec: GeneCodec, genes: np.ndarray) -> np.ndarray:
        """(N, dim) float32 one-hot features of gene rows."""
        L, nk, ne = codec.n_slots, len(self.kernels), len(self.ratios)
        g = genes.astype(np.int64)
        n = len(g)
        # each stage's choice index -> place in the encoding: a small table, then one gather
        kpos = np.searchsorted(np.array(self.kernels), codec.kernel_values)[
            codec.slot_stage[None, :], g[:, codec.k_cols]]
        epos = np.searchsorted(np.array(self.ratios), codec.ratio_values)[
            codec.slot_stage[None, :], g[:, codec.e_cols]]
        active = codec.active(genes).astype(np.float32)
        x = np.zeros((n, self.dim(L)), dtype=np.float32)
        rows = np.arange(n)[:, None]
        slots = np.arange(L)[None, :]
        x[rows, slots * nk + kpos] = active
        x[rows, L * nk + slots * ne + epos] = active
        r = codec.res_values[g[:, codec.r_col]]
        x[np.arange(n), L * (nk + ne) + (r - self.res_base) // self.res_step] = 1.0
        return x


def published_encoding() -> OneHotEncoding:
    """The encoding of OFA's published ImageNet predictor (128 inputs for 20 slots)."""
    return OneHotEncoding(kernels=(3, 5, 7), ratios=(3, 4, 6), res_base=112, res_step=16,
                          res_bins=8)


def default_encoding(codec: GeneCodec) -> OneHotEncoding:
    """One place per kernel and ratio of the space and one per searched resolution
    (ResNet50D: :class:`~ofa_platform.search.resnet_genes.ResNetEncoding`)."""
    from ofa_platform.search.resnet_genes import ResNetEncoding, ResNetGeneCodec

    space = codec.space
    res = codec.resolutions
    step = 1
    if len(res) > 1:
        step = 0
        for a, b in zip(res, res[1:]):
            step = math.gcd(step, b - a)
    if isinstance(codec, ResNetGeneCodec):
        return ResNetEncoding(ratios=tuple(space.ratios), res_base=min(res),  # type: ignore
                              res_step=step, res_bins=(max(res) - min(res)) // step + 1)
    return OneHotEncoding(
        kernels=tuple(sorted({k for st in space.stages for k in st.kernels})),
        ratios=tuple(sorted({e for st in space.stages for e in st.ratios})),
        res_base=min(res), res_step=step, res_bins=(max(res) - min(res)) // step + 1)


class AccuracyPredictor:
    """The MLP (Linear-ReLU x3, Linear to one output) with its encoding, evaluated in numpy."""

    def __init__(self, state_dict: dict[str, Any], encoding: OneHotEncoding) -> None:
        self.encoding = encoding
        self.state_dict = {k: _as_numpy(v) for k, v in state_dict.items()}
        idx = sorted({int(k.split(".")[0]) for k in self.state_dict if k.endswith(".weight")})
        self.layers = [(np.ascontiguousarray(self.state_dict[f"{i}.weight"].T),
                        self.state_dict[f"{i}.bias"]) for i in idx]
        if any(w.ndim != 2 or b.shape != (w.shape[1],) for w, b in self.layers):
            raise ValueError("not an MLP of Linear layers")
        self.n_inputs = int(self.layers[0][0].shape[0])

    def check(self, codec: GeneCodec, source: str = "the predictor") -> None:
        self.encoding.check(codec)
        want = self.encoding.dim(codec.n_slots)
        if want != self.n_inputs:
            raise UserError(f"{source} takes {self.n_inputs} inputs but space "
                            f"{codec.space.name} encodes to {want}")

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """Run the MLP on features in numpy (float32, as the weights): the search calls it once
        per generation, and neither torch's import nor its per-call overhead pays off."""
        h = np.ascontiguousarray(x, dtype=np.float32)
        last = len(self.layers) - 1
        for i, (w, b) in enumerate(self.layers):
            h = h @ w
            h += b
            if i < last:
                np.maximum(h, 0.0, out=h)
        return h[:, 0].astype(np.float64)

    def __call__(self, codec: GeneCodec, genes: np.ndarray) -> np.ndarray:
        """Predicted top-1 (fraction) of every gene row."""
        return self.predict_features(self.encoding.features(codec, genes))

    def predict_archs(self, codec: GeneCodec, archs: Sequence[ArchConfig]) -> np.ndarray:
        return self(codec, codec.encode(archs))

    def save(self, path: str | Path, metrics: dict[str, float] | None = None) -> Path:
        """Our format: the state dict plus the encoding (a plain published file has none)."""
        import torch

        payload = {"format": PREDICTOR_FORMAT, "encoding": asdict(self.encoding),
                   "state_dict": {k: torch.from_numpy(np.array(v))
                                  for k, v in self.state_dict.items()},
                   "metrics": dict(metrics or {})}
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
        return path


@contextmanager
def single_thread() -> Iterator[None]:
    """One BLAS thread (numpy's, and torch's when a command has imported torch) while the
    search runs: a 100-row MLP call is tiny, and on a busy 2-core machine two threads spinning
    on it were measured 10x slower than one. Torch is not imported here for the purpose."""
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        if torch is not None and before is not None:
            torch.set_num_threads(before)


def _as_numpy(value: Any) -> Any:
    """A torch tensor's values as a float32 numpy array (numpy arrays pass through)."""
    if hasattr(value, "detach"):
        return value.detach().cpu().float().numpy()
    return np.asarray(value, dtype=np.float32) if isinstance(value, np.ndarray) else value


def _read_predictor_file(path: Path) -> Any:
    """The file's object with tensors as numpy arrays: read without torch when the file is a
    plain container of tensors (the published predictor and ours are), else ``torch.load``."""
    from ofa_platform.search.tensorfile import UnsupportedFile, read_tensor_file

    try:
        return read_tensor_file(path)
    except UnsupportedFile:
        pass
    try:
        from search_spaces.checkpoints import load_weights_only

        return load_weights_only(path)  # torch's pickle warnings would precede the one line
    except Exception as exc:  # a corrupt or foreign file: one line for the user
        raise UserError(f"predictor {path} cannot be read ({type(exc).__name__})") from None


def load_predictor(path: str | Path, codec: GeneCodec) -> AccuracyPredictor:
    """Load OFA's published predictor (a bare state dict: published encoding) or one of ours,
    and check that it fits ``codec``'s space (a wrong input size is a :class:`UserError`)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"predictor {path} does not exist")
    data = _read_predictor_file(path)
    if isinstance(data, dict) and data.get("format") == PREDICTOR_FORMAT:
        from ofa_platform.search.resnet_genes import ResNetEncoding

        fields = {k: (tuple(v) if isinstance(v, list) else v)
                  for k, v in data["encoding"].items()}
        kind = ResNetEncoding if fields.get("kind") == "resnet" else OneHotEncoding
        encoding = kind(**fields)
        state = data["state_dict"]
    elif isinstance(data, dict) and "0.weight" in data:
        encoding, state = published_encoding(), data
    else:
        raise UserError(f"predictor {path} is neither OFA's MLP state dict nor ours")
    try:
        pred = AccuracyPredictor(state, encoding)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        raise UserError(f"predictor {path}: unexpected MLP layout") from None
    pred.check(codec, f"predictor {path}")
    return pred


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    """Kendall's tau-b: how well the predictor ranks archs, which is what the search uses."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    iu = np.triu_indices(len(x), k=1)
    dx = np.sign(x[:, None] - x[None, :])[iu]
    dy = np.sign(y[:, None] - y[None, :])[iu]
    denom = math.sqrt(float(np.count_nonzero(dx)) * float(np.count_nonzero(dy)))
    return float((dx * dy).sum() / denom) if denom else float("nan")


def train_predictor(codec: GeneCodec, archs: Sequence[ArchConfig], accuracies: Sequence[float],
                    *, seed: int, encoding: OneHotEncoding | None = None, hidden: int = 400,
                    n_layers: int = 3, epochs: int = 100, batch_size: int = 256,
                    lr: float = 1e-3, weight_decay: float = 1e-4,
                    val_fraction: float = 0.2) -> tuple[AccuracyPredictor, dict[str, float]]:
    """OFA's recipe: 80/20 split, Adam 1e-3, weight decay 1e-4, MSE, the output bias started
    at the mean training accuracy. Returns the predictor and held-out RMSE and Kendall tau."""
    import torch
    from torch import nn

    if len(archs) != len(accuracies) or len(archs) < MIN_PREDICTOR_ARCHS:
        raise UserError(f"training a predictor needs at least {MIN_PREDICTOR_ARCHS} archs with "
                        "an accuracy each")
    encoding = encoding or default_encoding(codec)
    encoding.check(codec)
    x_all = encoding.features(codec, codec.encode(archs))
    y_all = np.asarray(accuracies, dtype=np.float32)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x_all))
    n_val = max(1, int(round(len(order) * val_fraction)))
    val, train = order[:n_val], order[n_val:]
    gen = torch.Generator().manual_seed(seed)
    dims = [x_all.shape[1]] + [hidden] * n_layers
    mods: list[nn.Module] = []
    for a, b in zip(dims, dims[1:]):
        lin = nn.Linear(a, b)
        _init_linear(lin, gen)
        mods += [lin, nn.ReLU()]
    head = nn.Linear(hidden, 1)
    _init_linear(head, gen)
    with torch.no_grad():
        head.bias.fill_(float(y_all[train].mean()))
    model = nn.Sequential(*mods, head)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    xt, yt = torch.from_numpy(x_all[train]), torch.from_numpy(y_all[train])
    for _ in range(epochs):
        perm = torch.randperm(len(xt), generator=gen)
        for i in range(0, len(xt), batch_size):
            idx = perm[i:i + batch_size]
            loss = nn.functional.mse_loss(model(xt[idx])[:, 0], yt[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    pred = AccuracyPredictor(dict(model.state_dict()), encoding)
    p_val = pred.predict_features(x_all[val])
    rmse = float(np.sqrt(np.mean((p_val - y_all[val]) ** 2)))
    return pred, {"rmse": rmse, "kendall_tau": kendall_tau(p_val, y_all[val]),
                  "n_train": float(len(train)), "n_val": float(len(val))}


def _init_linear(lin: Any, gen: Any) -> None:
    """Torch's default init, drawn from a passed generator (no global RNG)."""
    import torch

    bound = 1.0 / math.sqrt(lin.in_features)
    with torch.no_grad():
        lin.weight.uniform_(-bound, bound, generator=gen)
        lin.bias.uniform_(-bound, bound, generator=gen)
