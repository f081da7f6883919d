"""The training loss as a function of one flat parameter vector, for every measure.

Why a separate object: all measures need the same three things — f(w), ∇f(w) and Hessian-vector
products at the trained point — evaluated over the *whole* measured set in memory-bounded chunks,
without ever writing into the model. `torch.func.functional_call` runs the model on substituted
parameters, so the module itself (parameters, buffers, `.grad`) is never touched.

Chunks are weighted by their size (loss_c · n_c / N), so with per-sample layers the chunked value
equals the full-batch value. Batch-statistics BatchNorm makes the function depend on the batch;
then the chunks *are* the BN batches (fixed, consecutive, size recorded) and nothing is split
silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
BNKind = Literal["none", "running", "batch"]


class Objective(Protocol):
    """What a measure needs: a flat point w0 and f, ∇f, Hv around it (the oracles implement it)."""

    w0: torch.Tensor  # flat, detached; dtype/device of the computation

    def loss(self, w: torch.Tensor) -> float: ...

    def loss_grad(self, w: torch.Tensor) -> tuple[float, torch.Tensor]: ...

    def hvp_at(self, w: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]: ...


def bn_kind(model: nn.Module, bn: Literal["eval", "train"] = "eval") -> BNKind:
    """'batch' if any BN layer normalises with batch statistics during measurement."""
    layers = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not layers:
        return "none"
    if bn == "train" or any(not m.track_running_stats for m in layers):
        return "batch"
    return "running"


class ModelObjective:
    """f(w) = loss_fn(model_w(x), y) over (x, y), chunked and size-weighted.

    The model must already be in the mode to measure in (run_measures sets eval mode); buffers
    are passed as clones so even train-mode BN cannot update the model's running statistics.
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        chunk_size: int = 4096,
        bn_batch_size: int | None = None,
        bn: Literal["eval", "train"] = "eval",
        loss_fn: LossFn = F.cross_entropy,
        hvp_cache: bool | Literal["auto"] = "auto",
    ) -> None:
        self.model, self.x, self.y, self.loss_fn = model, x, y, loss_fn
        self.hvp_cache = hvp_cache
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.frozen = {n: p.detach() for n, p in model.named_parameters() if not p.requires_grad}
        self.buffers = {n: b.detach() for n, b in model.named_buffers()}
        self.w0 = torch.cat([p.detach().reshape(-1) for _, p in named]).clone()
        self.n_samples = int(x.shape[0])
        self.bn_kind = bn_kind(model, bn)
        if self.bn_kind == "batch":
            # the BN batch defines the function: never cut it for memory's sake
            self.chunk = min(bn_batch_size or self.n_samples, self.n_samples)
        else:
            self.chunk = min(chunk_size, self.n_samples)
        self.n_evals = 0  # full-data loss or loss+gradient passes
        self.n_hvps = 0
        self.f0: float | None = None  # f(w0) once a caller has evaluated it (run_measures)

    def with_dtype(self, dtype: torch.dtype) -> ModelObjective:
        """The same function evaluated in another floating dtype (parameters, buffers and inputs
        cast; the model itself untouched): float64 when float32 cannot resolve a tiny loss."""
        if dtype == self.w0.dtype:
            return self
        out = object.__new__(ModelObjective)
        out.__dict__.update(self.__dict__)

        def cast(t: torch.Tensor) -> torch.Tensor:
            return t.to(dtype) if t.is_floating_point() else t

        out.x = cast(self.x)
        out.w0 = self.w0.to(dtype)
        out.frozen = {n: cast(t) for n, t in self.frozen.items()}
        out.buffers = {n: cast(t) for n, t in self.buffers.items()}
        out.n_evals = out.n_hvps = 0
        out.f0 = None
        return out

    # -- flat vector ↔ parameter dict ------------------------------------------------------
    def unflatten(self, w: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(w, self.numels)
        return {n: t.view(s) for n, t, s in zip(self.names, parts, self.shapes, strict=True)}

    def _chunks(self):
        for i in range(0, self.n_samples, self.chunk):
            xb, yb = self.x[i : i + self.chunk], self.y[i : i + self.chunk]
            yield xb, yb, xb.shape[0] / self.n_samples

    def _forward(self, params: dict[str, torch.Tensor], xb: torch.Tensor) -> torch.Tensor:
        # clones: a train-mode BN layer would otherwise update the model's running buffers
        buffers = {n: b.clone() for n, b in self.buffers.items()}
        return functional_call(self.model, {**params, **self.frozen, **buffers}, (xb,))

    # -- f, ∇f, accuracy ------------------------------------------------------------------
    def loss(self, w: torch.Tensor) -> float:
        self.n_evals += 1
        params = self.unflatten(w.to(self.w0))
        with torch.no_grad():
            total = sum(
                self.loss_fn(self._forward(params, xb), yb).double() * wt
                for xb, yb, wt in self._chunks()
            )
        return float(total)

    def loss_grad(self, w: torch.Tensor) -> tuple[float, torch.Tensor]:
        self.n_evals += 1
        w = w.to(self.w0).detach()
        total, grad = 0.0, torch.zeros_like(w)
        for xb, yb, wt in self._chunks():
            wc = w.clone().requires_grad_(True)
            loss = self.loss_fn(self._forward(self.unflatten(wc), xb), yb) * wt
            (g,) = torch.autograd.grad(loss, wc)
            total += float(loss.detach().double())
            grad += g
        return total, grad

    def accuracy(self, w: torch.Tensor) -> float:
        """Fraction of argmax predictions equal to y (classification models only)."""
        params = self.unflatten(w.to(self.w0))
        correct = 0
        with torch.no_grad():
            for xb, yb, _ in self._chunks():
                correct += int((self._forward(params, xb).argmax(-1) == yb).sum())
        return correct / self.n_samples

    # -- Hessian-vector products -----------------------------------------------------------
    def hvp_at(self, w: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """v ↦ ∇²f(w) v. With hvp_cache the gradient graph of every chunk is built once here
        (create_graph=True) and each product is one extra backward through it — ≈ 2× cheaper
        than re-tracing grad-of-grad per product (measures.md, performance notes)."""
        w = w.to(self.w0).detach()

        def chunk_grad(xb: torch.Tensor, yb: torch.Tensor, wt: float):
            wc = w.clone().requires_grad_(True)
            loss = self.loss_fn(self._forward(self.unflatten(wc), xb), yb) * wt
            (g,) = torch.autograd.grad(loss, wc, create_graph=True)
            return wc, g

        cache: list | None = None
        if self.hvp_cache is True:
            cache = [chunk_grad(*c) for c in self._chunks()]
        elif self.hvp_cache == "auto":
            first, nbytes = graph_bytes(lambda: chunk_grad(*next(self._chunks())))
            chunks = -(-self.n_samples // self.chunk)
            self.hvp_cache_used = nbytes * chunks <= HVP_CACHE_SHARE * free_bytes(w.device)
            if self.hvp_cache_used:
                cache = [first] + [chunk_grad(*c) for k, c in enumerate(self._chunks()) if k]

        def hvp(v: torch.Tensor) -> torch.Tensor:
            self.n_hvps += 1
            v = v.to(self.w0)
            out = torch.zeros_like(w)
            for c in cache if cache is not None else (chunk_grad(*c) for c in self._chunks()):
                wc, g = c
                if not g.requires_grad:  # f is linear in w on this chunk: zero curvature
                    continue
                (hv,) = torch.autograd.grad(g, wc, v, retain_graph=cache is not None)
                out += hv
            return out

        return hvp


HVP_CACHE_SHARE = 0.25  # auto: keep the graphs when they take at most this share of free memory


def graph_bytes(build: Callable[[], object]) -> tuple[object, int]:
    """Run `build` and count the bytes autograd saves for backward while it runs (each storage
    once): what keeping its graph costs. A C1 graph on 4096 CIFAR images is ≈ 10 GB, so keeping
    every chunk's graph of 45 000 images (`hvp_cache: true`) ran an H100 out of memory."""
    seen: dict[tuple, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        seen[(t.device.type, st.data_ptr())] = st.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = build()
    return out, sum(seen.values())


def free_bytes(device: torch.device) -> int:
    """Free memory where the graphs would live: the GPU's, or the machine's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            info = {ln.split(":")[0]: int(ln.split()[1]) * 1024 for ln in f}
        return info["MemAvailable"]
    except (OSError, KeyError, ValueError, IndexError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def to_numpy64(t: torch.Tensor) -> np.ndarray:
    """Optimiser side (SciPy) works in float64."""
    return t.detach().to("cpu", torch.float64).numpy()
