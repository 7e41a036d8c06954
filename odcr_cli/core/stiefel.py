"""Riemannian SGD on the Stiefel manifold St(n, p) = {Theta in R^{n x p} : Theta^T Theta = I_p}
(docs/method.md, section 3.2), used for the weight matrices of ODCR's orthogonal projection heads.

PyTorch stores a Linear weight as (out, in); with out >= in its columns are orthonormal, so the
weight itself is the Stiefel point Theta (n = out, p = in). A wide weight (out < in, orthonormal
rows) is handled by working on its transpose.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import Tensor


def _sym(a: Tensor) -> Tensor:
    """Symmetric part (A + A^T) / 2 of a square (p, p) matrix."""
    return 0.5 * (a + a.transpose(-2, -1))


def riemannian_gradient(theta: Tensor, egrad: Tensor) -> Tensor:
    """Riemannian gradient for the embedded metric: G - Theta sym(Theta^T G).

    theta: (n, p) with orthonormal columns; egrad: (n, p) Euclidean gradient. Returns (n, p),
    a tangent vector at theta (Theta^T xi is skew-symmetric).
    """
    return egrad - theta @ _sym(theta.transpose(-2, -1) @ egrad)


def polar_retraction(theta: Tensor, step: Tensor) -> Tensor:
    """Polar retraction: the orthonormal polar factor U V^T of the thin SVD of (theta + step).

    theta, step: (n, p), n >= p. For a tangent step this equals
    (theta + step)(I + step^T step)^(-1/2) (spec 2.3), and it is defined for any full-rank sum.
    """
    x = theta + step
    # Newton-Schulz iteration towards the polar factor: a few matmuls instead of an SVD (about
    # 3x cheaper for 256x256), quadratically convergent for the small steps of training.
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    for _ in range(8):
        gram = x.transpose(-2, -1) @ x
        err = (gram - eye).abs().max()
        if err < 1e-12:
            return x
        if err > 0.5:  # too far from orthonormal for Newton-Schulz to converge fast
            break
        x = x @ (1.5 * eye - 0.5 * gram)
    u, _, vh = torch.linalg.svd(x, full_matrices=False)
    return u @ vh


def orthogonality_error(theta: Tensor) -> float:
    """max |Theta^T Theta - I| for theta (n, p), n >= p (for n < p the rows are checked)."""
    t = theta.detach().to(torch.float64)
    if t.shape[-2] < t.shape[-1]:
        t = t.transpose(-2, -1)
    gram = t.transpose(-2, -1) @ t
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    return (gram - eye).abs().max().item()


def _as_tall(w: Tensor) -> tuple[Tensor, bool]:
    """View w (n, p) as a tall matrix; returns (matrix, transposed?)."""
    if w.dim() != 2:
        raise ValueError(f"Stiefel parameters must be matrices, got shape {tuple(w.shape)}")
    return (w.t(), True) if w.shape[0] < w.shape[1] else (w, False)


@torch.no_grad()
def project_(w: Tensor) -> Tensor:
    """Replace w (n, p) in place by its nearest matrix with orthonormal columns (rows if n < p),
    i.e. its polar factor, computed in float64. Returns w."""
    m, transposed = _as_tall(w)
    with torch.autocast(device_type=w.device.type, enabled=False):
        q = polar_retraction(m.to(torch.float64), torch.zeros_like(m, dtype=torch.float64))
    w.copy_(q.t() if transposed else q)
    return w


class StiefelSGD(torch.optim.Optimizer):
    """Riemannian gradient descent with polar retraction (spec 2.3):
    W <- polar(W - lr * (G - W sym(W^T G))), in float64 with autocast off, cast back to W's dtype.

    Params: 2-D tensors already on the manifold (e.g. orthogonally initialised Linear weights).
    Params without a gradient are skipped. As with every torch optimiser, gradients are not
    zeroed here (call ``zero_grad``). The only hyper-parameter is ``lr`` (param_groups[i]["lr"]),
    so LR schedulers and state_dict()/load_state_dict() work unchanged; there is no per-param state.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], lr: float) -> None:
        if lr < 0.0:
            raise ValueError(f"invalid learning rate {lr}")
        super().__init__(params, {"lr": lr})
        for group in self.param_groups:
            for p in group["params"]:
                _as_tall(p)  # fail early on non-matrix params

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr = float(group["lr"])
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("StiefelSGD does not support sparse gradients")
                w, transposed = _as_tall(p)
                g = p.grad.t() if transposed else p.grad
                # float64 and no autocast: the SVD and the Gram products must not run in half
                with torch.autocast(device_type=p.device.type, enabled=False):
                    w64, g64 = w.to(torch.float64), g.to(torch.float64)
                    xi = -lr * riemannian_gradient(w64, g64)
                    new = polar_retraction(w64, xi)
                p.copy_(new.t() if transposed else new)
        return loss
