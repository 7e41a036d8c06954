"""Tests for odcr_cli.core.losses (method spec 1.4, 1.5, 2.4-2.7 and the checks of section 5)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from odcr_cli.core.losses import (
    channel_classifier_loss,
    channel_weights,
    l1_identity_loss,
    lsgan_d_loss,
    lsgan_g_loss,
    patch_nce_loss,
    weight_entropy,
    wpnce_loss,
)

TAU = 0.07


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unit(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Random unit vectors along the last dim."""
    return F.normalize(torch.randn(*shape, generator=_gen(seed), dtype=dtype), dim=-1)


def _orthonormal_rows(n: int, d: int, seed: int = 0) -> torch.Tensor:
    """(n, d) with orthonormal rows, n <= d."""
    q, _ = torch.linalg.qr(torch.randn(d, n, generator=_gen(seed), dtype=torch.float64))
    return q.t().contiguous()


# --------------------------------------------------------------------------------------- LSGAN

def test_lsgan_values() -> None:
    real = torch.tensor([[0.5, 1.5]])
    fake = torch.tensor([[0.5, -0.5]])
    # MSE(real, 1) = 0.25, MSE(fake, 0) = 0.25 -> 0.5 * 0.5
    assert lsgan_d_loss(real, fake).item() == pytest.approx(0.25)
    assert lsgan_d_loss(torch.ones(2, 1, 3, 3), torch.zeros(2, 1, 3, 3)).item() == 0.0
    assert lsgan_d_loss(torch.zeros(2, 1, 3, 3), torch.ones(2, 1, 3, 3)).item() == pytest.approx(1.0)
    assert lsgan_g_loss(torch.tensor([0.0, 2.0])).item() == pytest.approx(1.0)
    assert lsgan_g_loss(torch.ones(1, 1, 4, 4)).item() == 0.0


# ------------------------------------------------------------------------------------ PatchNCE

def _patch_nce_reference(q: torch.Tensor, k: torch.Tensor, tau: float) -> torch.Tensor:
    """Slow per-query loop: CE over [q.k_i, q.k_j (j != i, same image)]."""
    b, s, _ = q.shape
    losses = []
    for bi in range(b):
        for i in range(s):
            neg = [q[bi, i] @ k[bi, j] for j in range(s) if j != i]
            logits = torch.stack([q[bi, i] @ k[bi, i], *neg]) / tau
            losses.append(torch.logsumexp(logits, 0) - logits[0])
    return torch.stack(losses).mean()


def test_patch_nce_orthogonal_keys_closed_form() -> None:
    s, d = 8, 16
    k = torch.stack([_orthonormal_rows(s, d, seed=1), _orthonormal_rows(s, d, seed=2)])  # (2, S, D)
    loss = patch_nce_loss(k.clone(), k, tau=TAU)
    expected = math.log1p((s - 1) * math.exp(-1.0 / TAU))
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_patch_nce_equal_similarities_is_log_s() -> None:
    s, d = 12, 16
    # all keys identical: every logit equals q.k / tau, whatever q is
    k = _unit(1, 1, d, seed=3).expand(2, s, d)
    q = _unit(2, s, d, seed=4)
    assert patch_nce_loss(q, k, tau=TAU).item() == pytest.approx(math.log(s), rel=1e-12)


def test_patch_nce_matches_loop_reference() -> None:
    q, k = _unit(2, 9, 16, seed=5), _unit(2, 9, 16, seed=6)
    assert torch.allclose(patch_nce_loss(q, k, tau=TAU), _patch_nce_reference(q, k, TAU), atol=1e-12)


def test_patch_nce_no_gradient_into_keys() -> None:
    q = _unit(2, 6, 8, seed=7).requires_grad_()
    k = _unit(2, 6, 8, seed=8).requires_grad_()
    patch_nce_loss(q, k).backward()
    assert k.grad is None
    assert q.grad is not None and q.grad.abs().sum() > 0


def test_patch_nce_negatives_from_batch_closed_form() -> None:
    # B = 2, both images hold the same S orthonormal keys and q = k. Per image: the S-1 other
    # keys give logit 0. From the batch: additionally the twin key in the other image has
    # logit 1/tau, plus S more zeros: loss = log(2 + (2S - 2) e^(-1/tau)).
    s, d = 6, 8
    k1 = _orthonormal_rows(s, d, seed=9)
    k = torch.stack([k1, k1])
    per_image = patch_nce_loss(k.clone(), k, tau=TAU)
    batch = patch_nce_loss(k.clone(), k, tau=TAU, negatives_from_batch=True)
    assert per_image.item() == pytest.approx(math.log1p((s - 1) * math.exp(-1 / TAU)), rel=1e-9)
    assert batch.item() == pytest.approx(math.log(2 + (2 * s - 2) * math.exp(-1 / TAU)), rel=1e-9)
    # equal similarities: log(S) per image vs log(B*S) over the batch
    k_eq = _unit(1, 1, d, seed=10).expand(2, s, d)
    q = _unit(2, s, d, seed=11)
    assert patch_nce_loss(q, k_eq, negatives_from_batch=True).item() == pytest.approx(math.log(2 * s))


# ------------------------------------------------------------------------------ classifier CE

def test_classifier_loss_zero_logits_is_two_log_two() -> None:
    loss = channel_classifier_loss(torch.zeros(5, 2), torch.zeros(3, 2))
    assert loss.item() == pytest.approx(2 * math.log(2))


def test_classifier_loss_decreases_with_agreeing_logits() -> None:
    sign_h, sign_c = torch.tensor([1.0, -1.0]), torch.tensor([-1.0, 1.0])
    values = [channel_classifier_loss(t * sign_h.expand(4, 2), t * sign_c.expand(6, 2)).item()
              for t in (-2.0, -1.0, 0.0, 1.0, 2.0, 4.0)]
    assert all(a > b for a, b in zip(values, values[1:]))
    # each of the two BCE terms is softplus(-t)
    assert values[-1] == pytest.approx(2 * math.log1p(math.exp(-4.0)), rel=1e-5)
    # swapping the roles of the samples is penalised
    assert channel_classifier_loss(sign_c.expand(4, 2), sign_h.expand(6, 2)).item() > values[3]


def test_classifier_loss_trains_theta_columns_in_order() -> None:
    """Column 0 must be the hazy classifier: fitting makes hazy logits (+, -)."""
    g = _gen(12)
    x_h = torch.randn(32, 8, generator=g) + 1.0
    x_c = torch.randn(32, 8, generator=g) - 1.0
    lin = torch.nn.Linear(8, 2)
    opt = torch.optim.SGD(lin.parameters(), lr=0.5)
    first = None
    for _ in range(30):
        opt.zero_grad()
        loss = channel_classifier_loss(lin(x_h), lin(x_c))
        first = loss.item() if first is None else first
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    mean_h = lin(x_h).mean(0)
    assert mean_h[0] > 0 > mean_h[1]


# ---------------------------------------------------------------------------- channel weights

def test_channel_weights_simplex_and_no_grad() -> None:
    theta = torch.randn(16, generator=_gen(13), requires_grad=True)
    x = _unit(2, 5, 16, seed=14, dtype=torch.float32).requires_grad_()
    w = channel_weights(theta, x)
    assert w.shape == x.shape
    assert not w.requires_grad and w.grad_fn is None
    assert (w >= 0).all()
    assert torch.allclose(w.sum(-1), torch.ones(2, 5), atol=1e-6)
    assert torch.allclose(w, torch.softmax((theta * x).abs(), dim=-1).detach())
    # depends only on |theta * x|: flipping signs changes nothing
    assert torch.allclose(channel_weights(-theta, x), w)


def test_weight_entropy() -> None:
    d = 16
    uniform = channel_weights(torch.zeros(d), _unit(3, 4, d, seed=15))
    assert torch.allclose(uniform, torch.full_like(uniform, 1 / d))
    assert weight_entropy(uniform).item() == pytest.approx(math.log(d))
    one_hot = F.one_hot(torch.arange(4) % d, d).double()
    assert weight_entropy(one_hot).item() == pytest.approx(0.0, abs=1e-12)
    sharp = channel_weights(torch.full((d,), 50.0), _unit(3, 4, d, seed=16))
    assert weight_entropy(sharp) < weight_entropy(uniform)


# --------------------------------------------------------------------------------------- WPNCE

def _wpnce_reference(q: torch.Tensor, kh: torch.Tensor, kc: torch.Tensor, wh: torch.Tensor,
                     wc: torch.Tensor, tau: float, hazy_pair: str) -> torch.Tensor:
    """Slow literal transcription of spec 2.6: -log(P / (P + N)) per query, float64 exps."""

    def l(w: torch.Tensor | float, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        return torch.exp((w * z2 * z1).sum() / tau)

    b, s, _ = q.shape
    losses = []
    for bi in range(b):
        for i in range(s):
            z, z_pm = q[bi, i], kh[bi, i]
            a = 1 - wh[bi, i] if hazy_pair == "swapped" else wh[bi, i]
            pos = l(a, z, z_pm) + sum(l(wc[bi, n], z, kc[bi, n]) for n in range(kc.shape[1]))
            neg = l(1 - a, z, z_pm)
            neg = neg + sum(l(1.0, z, kh[bi, j]) for j in range(s) if j != i)
            neg = neg + sum(l(1 - wc[bi, n], z, kc[bi, n]) for n in range(kc.shape[1]))
            losses.append(-torch.log(pos / (pos + neg)))
    return torch.stack(losses).mean()


def _wpnce_inputs(b: int, s: int, sc: int, d: int, seed: int, scale: float = 3.0):
    q, kh, kc = _unit(b, s, d, seed=seed), _unit(b, s, d, seed=seed + 1), _unit(b, sc, d, seed=seed + 2)
    theta = scale * torch.randn(2, d, generator=_gen(seed + 3), dtype=torch.float64)
    return q, kh, kc, channel_weights(theta[0], kh), channel_weights(theta[1], kc)


@pytest.mark.parametrize("hazy_pair", ["swapped", "literal"])
def test_wpnce_matches_loop_reference(hazy_pair: str) -> None:
    q, kh, kc, wh, wc = _wpnce_inputs(2, 5, 7, 12, seed=20)
    fast = wpnce_loss(q, kh, kc, wh, wc, tau=TAU, hazy_pair=hazy_pair)
    slow = _wpnce_reference(q, kh, kc, wh, wc, TAU, hazy_pair)
    assert torch.allclose(fast, slow, rtol=1e-10, atol=1e-12)


def test_wpnce_float32_matches_reference() -> None:
    q, kh, kc, wh, wc = _wpnce_inputs(1, 6, 4, 16, seed=30)
    fast = wpnce_loss(q.float(), kh.float(), kc.float(), wh.float(), wc.float())
    assert fast.dtype == torch.float32
    assert fast.item() == pytest.approx(_wpnce_reference(q, kh, kc, wh, wc, TAU, "swapped").item(), rel=1e-5)


def test_wpnce_uniform_weights_closed_form() -> None:
    # Uniform weights w = 1/D make every weighted logit a scaled cosine. Take q_i = kh_i with
    # hazy keys mutually orthogonal and clear keys orthogonal to all hazy keys. Then
    #   swapped: P = e^{(1-1/D)/tau} + Sc,   N = e^{1/(D tau)} + (S-1) + Sc
    #   literal: P = e^{1/(D tau)} + Sc,     N = e^{(1-1/D)/tau} + (S-1) + Sc
    # and loss = log(1 + N/P) for every query.
    s, sc, d = 4, 5, 16
    basis = _orthonormal_rows(s + sc, d, seed=40)
    kh, kc = basis[:s].unsqueeze(0), basis[s:].unsqueeze(0)
    wh, wc = torch.full_like(kh, 1 / d), torch.full_like(kc, 1 / d)
    big, small = math.exp((1 - 1 / d) / TAU), math.exp(1 / (d * TAU))
    for mode, p, n in (("swapped", big + sc, small + s - 1 + sc),
                       ("literal", small + sc, big + s - 1 + sc)):
        loss = wpnce_loss(kh.clone(), kh, kc, wh, wc, tau=TAU, hazy_pair=mode)
        assert loss.item() == pytest.approx(math.log1p(n / p), rel=1e-9), mode
    # Second configuration: q equals the (single, repeated) clear key and is orthogonal to the
    # hazy keys: P = 1 + Sc e^{1/(D tau)}, N = 1 + (S-1) + Sc e^{(1-1/D)/tau}, for both modes.
    kc_same = basis[s:s + 1].unsqueeze(0).expand(1, sc, d)
    q = basis[s:s + 1].unsqueeze(0).expand(1, s, d)
    p, n = 1 + sc * small, s + sc * big
    for mode in ("swapped", "literal"):
        loss = wpnce_loss(q, kh, kc_same, wh, wc, tau=TAU, hazy_pair=mode)
        assert loss.item() == pytest.approx(math.log1p(n / p), rel=1e-9), mode


def _interpolation_losses(hazy_pair: str, scale: float) -> list[float]:
    """Loss while every output patch moves from a random direction onto its own input patch."""
    b, s, sc, d = 1, 16, 16, 64
    start, kh, kc, wh, wc = _wpnce_inputs(b, s, sc, d, seed=50, scale=scale)
    out = []
    for t in torch.linspace(0, 1, 11, dtype=torch.float64):
        q = F.normalize((1 - t) * start + t * kh, dim=-1)
        out.append(wpnce_loss(q, kh, kc, wh, wc, tau=TAU, hazy_pair=hazy_pair).item())
    return out


@pytest.mark.parametrize("scale", [0.5, 4.0, 40.0])  # near-uniform .. near-one-hot weights
def test_wpnce_swapped_pulls_output_to_its_input(scale: float) -> None:
    values = _interpolation_losses("swapped", scale)
    assert all(a > b for a, b in zip(values, values[1:])), values
    assert values[-1] < 0.1


@pytest.mark.parametrize("scale", [0.5, 4.0, 40.0])
def test_wpnce_literal_pushes_output_from_its_input(scale: float) -> None:
    """Regression test documenting spec ambiguity #5: the printed Eq. 12/13 ("literal") weights
    the same-place hazy key with w_h in P and 1-w_h in N, so moving the output onto its own input
    patch *raises* the loss, i.e. the printed form destroys content."""
    values = _interpolation_losses("literal", scale)
    assert all(a < b for a, b in zip(values, values[1:])), values
    assert values[-1] > values[0] + 1.0


def test_wpnce_gradients_reach_queries_only() -> None:
    q, kh, kc, wh, wc = _wpnce_inputs(2, 4, 3, 8, seed=60)
    q.requires_grad_()
    tensors = [t.clone().requires_grad_() for t in (kh, kc, wh, wc)]
    wpnce_loss(q, *tensors).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert all(t.grad is None for t in tensors)


def test_wpnce_rejects_unknown_mode_and_bad_shapes() -> None:
    q, kh, kc, wh, wc = _wpnce_inputs(1, 3, 2, 4, seed=70)
    with pytest.raises(ValueError):
        wpnce_loss(q, kh, kc, wh, wc, hazy_pair="printed")
    with pytest.raises(ValueError):
        wpnce_loss(q, kh, kc, wh[:, :2], wc)
    with pytest.raises(ValueError):
        wpnce_loss(q, kh, kc[..., :3], wh, wc[..., :3])


# ------------------------------------------------------------------------------- identity L1

def test_l1_identity_loss() -> None:
    out = torch.zeros(1, 3, 2, 2, requires_grad=True)
    target = torch.full((1, 3, 2, 2), 0.5)
    loss = l1_identity_loss(out, target)
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    assert out.grad is not None
