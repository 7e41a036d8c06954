"""Tests for odcr_cli.core.stiefel (method spec 2.3 and the checks of section 5)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from odcr_cli.core.stiefel import (
    StiefelSGD,
    orthogonality_error,
    polar_retraction,
    project_,
    riemannian_gradient,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed), dtype=dtype)


def _stiefel_point(n: int, p: int, seed: int) -> torch.Tensor:
    """(n, p) float64 with orthonormal columns."""
    q, _ = torch.linalg.qr(_randn(n, p, seed=seed))
    return q


def _polar(m: torch.Tensor) -> torch.Tensor:
    u, _, vh = torch.linalg.svd(m, full_matrices=False)
    return u @ vh


# ------------------------------------------------------------------------- manifold geometry

def test_riemannian_gradient_is_tangent_and_a_projection() -> None:
    theta, egrad = _stiefel_point(20, 7, seed=1), _randn(20, 7, seed=2)
    xi = riemannian_gradient(theta, egrad)
    skew = theta.t() @ xi
    assert torch.allclose(skew + skew.t(), torch.zeros(7, 7, dtype=torch.float64), atol=1e-12)
    # projecting a tangent vector again changes nothing
    assert torch.allclose(riemannian_gradient(theta, xi), xi, atol=1e-12)
    # it is a descent direction for the Euclidean gradient: <G, grad> = ||grad||^2 >= 0
    assert (egrad * xi).sum() == pytest.approx((xi * xi).sum().item(), rel=1e-10)


def test_polar_retraction_matches_spec_formula() -> None:
    """For a tangent step, polar(Theta + Xi) = (Theta + Xi)(I + Xi^T Xi)^(-1/2) (spec 2.3)."""
    theta = _stiefel_point(16, 5, seed=3)
    xi = -0.3 * riemannian_gradient(theta, _randn(16, 5, seed=4))
    evals, evecs = torch.linalg.eigh(torch.eye(5, dtype=torch.float64) + xi.t() @ xi)
    inv_sqrt = evecs @ torch.diag(evals.rsqrt()) @ evecs.t()
    new = polar_retraction(theta, xi)
    assert torch.allclose(new, (theta + xi) @ inv_sqrt, atol=1e-12)
    assert orthogonality_error(new) < 1e-13
    assert torch.allclose(polar_retraction(theta, torch.zeros_like(theta)), theta, atol=1e-12)


def test_orthogonality_error() -> None:
    theta = _stiefel_point(8, 3, seed=5)
    assert orthogonality_error(theta) < 1e-14
    assert orthogonality_error(2 * theta) == pytest.approx(3.0)
    assert orthogonality_error(theta.t()) < 1e-14  # wide: rows are checked


def test_project_makes_columns_or_rows_orthonormal() -> None:
    tall, wide = _randn(12, 4, seed=6, dtype=torch.float32), _randn(3, 10, seed=7, dtype=torch.float32)
    expected = _polar(tall.double()).float()
    assert project_(tall) is tall
    assert torch.allclose(tall, expected, atol=1e-6)
    assert orthogonality_error(tall) < 1e-6
    project_(wide)
    assert orthogonality_error(wide) < 1e-6


# ------------------------------------------------------------------------------- optimiser

@pytest.mark.slow
@pytest.mark.parametrize("shape", [(256, 128), (256, 3)])
def test_stays_on_manifold_after_many_random_steps(shape: tuple[int, int]) -> None:
    layer = nn.Linear(shape[1], shape[0], bias=False)  # weight (out, in), out >= in
    nn.init.orthogonal_(layer.weight)
    opt = StiefelSGD([layer.weight], lr=0.1)
    g = _gen(8)
    start = layer.weight.detach().clone()
    for _ in range(1000):
        layer.weight.grad = torch.randn(shape, generator=g)
        opt.step()
    assert layer.weight.dtype == torch.float32
    assert orthogonality_error(layer.weight) < 1e-5
    assert (layer.weight.detach() - start).abs().max() > 0.1  # it did move


def test_step_is_polar_of_riemannian_sgd_step() -> None:
    w = nn.Parameter(_stiefel_point(10, 4, seed=9))
    w.grad = _randn(10, 4, seed=10)
    expected = _polar(w.detach() - 0.05 * riemannian_gradient(w.detach(), w.grad))
    StiefelSGD([w], lr=0.05).step()
    assert torch.allclose(w.detach(), expected, atol=1e-12)


def test_skips_params_without_grad_and_handles_wide_matrices() -> None:
    frozen = nn.Parameter(_stiefel_point(6, 2, seed=11).float())
    wide = nn.Parameter(_stiefel_point(9, 4, seed=12).t().contiguous().float())  # (4, 9) rows orthonormal
    before = frozen.detach().clone()
    opt = StiefelSGD([frozen, wide], lr=0.1)
    for i in range(20):
        wide.grad = _randn(4, 9, seed=100 + i, dtype=torch.float32)
        opt.step()
    assert torch.equal(frozen.detach(), before)
    assert orthogonality_error(wide) < 1e-6


def test_step_ignores_autocast() -> None:
    w = nn.Parameter(_stiefel_point(64, 16, seed=13).float())
    opt = StiefelSGD([w], lr=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        for i in range(10):
            w.grad = _randn(64, 16, seed=200 + i, dtype=torch.float32)
            opt.step()
    assert w.dtype == torch.float32
    assert orthogonality_error(w) < 1e-5  # an enclosing AMP region must not lower the precision


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        StiefelSGD([nn.Parameter(torch.zeros(5))], lr=0.1)
    with pytest.raises(ValueError):
        StiefelSGD([nn.Parameter(torch.eye(3))], lr=-1.0)


def _procrustes(a: torch.Tensor, b: torch.Tensor, w0: torch.Tensor, lr: float, steps: int) -> torch.Tensor:
    """Minimise ||A W - B||_F^2 with StiefelSGD on a float32 parameter, as in training."""
    w = nn.Parameter(w0.float().clone())
    opt = StiefelSGD([w], lr=lr)
    af, bf = a.float(), b.float()
    for _ in range(steps):
        opt.zero_grad()
        ((af @ w - bf) ** 2).sum().backward()
        opt.step()
    return w.detach().double()


def test_solves_orthogonal_procrustes_on_On() -> None:
    # Over O(n), ||A W||_F is constant, so the optimum is polar(A^T B). O(n) has two components
    # (det = +-1) and a retraction cannot jump between them: start in the optimum's component.
    n, m = 6, 10
    a, b = _randn(m, n, seed=14), _randn(m, n, seed=15)
    w_star = _polar(a.t() @ b)
    w0 = _polar(_randn(n, n, seed=16))
    if torch.linalg.det(w0) * torch.linalg.det(w_star) < 0:
        w0[:, 0] = -w0[:, 0]
    lr = 0.5 / torch.linalg.matrix_norm(a.t() @ b, ord=2).item()
    w = _procrustes(a, b, w0, lr, steps=300)
    f_star = ((a @ w_star - b) ** 2).sum().item()
    assert (w - w_star).abs().max() < 1e-4
    assert ((a @ w - b) ** 2).sum().item() == pytest.approx(f_star, rel=1e-6)


def test_solves_procrustes_on_stiefel() -> None:
    # On St(n, p) with p < n the optimum is polar(A^T B) when A^T A = c I (then ||A W||^2 = c p);
    # optimal value c p + ||B||^2 - 2 ||A^T B||_* (nuclear norm). St(n, p) is connected.
    n, p, c = 8, 3, 4.0
    a = c ** 0.5 * _stiefel_point(n, n, seed=17)
    b = _randn(n, p, seed=18)
    w_star = _polar(a.t() @ b)
    f_star = c * p + (b ** 2).sum().item() - 2 * torch.linalg.matrix_norm(a.t() @ b, ord="nuc").item()
    w0 = _stiefel_point(n, p, seed=19)
    lr = 0.5 / torch.linalg.matrix_norm(a.t() @ b, ord=2).item()
    w = _procrustes(a, b, w0, lr, steps=300)
    assert (w - w_star).abs().max() < 1e-4
    assert ((a @ w - b) ** 2).sum().item() == pytest.approx(f_star, rel=1e-6)


def test_lambda_lr_scheduler_drives_the_step_size() -> None:
    w = nn.Parameter(_stiefel_point(10, 3, seed=20))
    opt = StiefelSGD([w], lr=0.2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch: [1.0, 0.5, 0.0][min(epoch, 2)])
    for epoch, factor in enumerate([1.0, 0.5, 0.0]):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.2 * factor)
        w.grad = _randn(10, 3, seed=30 + epoch)
        expected = _polar(w.detach() - 0.2 * factor * riemannian_gradient(w.detach(), w.grad))
        opt.step()
        sched.step()
        assert torch.allclose(w.detach(), expected, atol=1e-12)
    # at lr 0 the matrix stays where it was
    assert torch.allclose(w.detach(), expected, atol=1e-12)


def test_state_dict_round_trip() -> None:
    def make(w0: torch.Tensor) -> tuple[nn.Parameter, StiefelSGD, torch.optim.lr_scheduler.LambdaLR]:
        w = nn.Parameter(w0.clone())
        opt = StiefelSGD([w], lr=0.1)
        return w, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0 - 0.1 * e)

    w_a, opt_a, sched_a = make(_stiefel_point(12, 4, seed=21))
    for i in range(3):
        w_a.grad = _randn(12, 4, seed=40 + i)
        opt_a.step()
        sched_a.step()
    w_b, opt_b, sched_b = make(w_a.detach())
    opt_b.load_state_dict(opt_a.state_dict())
    sched_b.load_state_dict(sched_a.state_dict())
    assert opt_b.param_groups[0]["lr"] == pytest.approx(opt_a.param_groups[0]["lr"])
    assert opt_b.param_groups[0]["lr"] == pytest.approx(0.07)
    for i in range(2):
        grad = _randn(12, 4, seed=50 + i)
        for w, opt, sched in ((w_a, opt_a, sched_a), (w_b, opt_b, sched_b)):
            w.grad = grad.clone()
            opt.step()
            sched.step()
    assert torch.equal(w_a.detach(), w_b.detach())
