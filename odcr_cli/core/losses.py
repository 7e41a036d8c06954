"""Loss functions of CUT and ODCR (docs/method.md, sections 2 and 3).

Pure functions of tensors. Shape letters: B images, S sampled locations per image (queries and
hazy keys), Sc sampled clear locations, D embedding channels (256), N/M classifier samples.
Contrastive embeddings are expected to be unit vectors; all contrastive losses are
mean-reduced over the B*S queries (the per-layer average is the caller's job).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from odcr_cli.core.configs import WEIGHT_SCALES
from odcr_cli.haze import prior_torch
from odcr_cli.haze.constants import PATCH
from odcr_cli.haze.scattering import remove_haze

HAZY_PAIR_MODES: tuple[str, ...] = ("swapped", "literal")


def lsgan_d_loss(pred_real: Tensor, pred_fake: Tensor) -> Tensor:
    """LSGAN discriminator loss 0.5 * (MSE(D(y), 1) + MSE(D(G(x)), 0)); any equal-rank maps -> ()."""
    real = F.mse_loss(pred_real, torch.ones_like(pred_real))
    fake = F.mse_loss(pred_fake, torch.zeros_like(pred_fake))
    return 0.5 * (real + fake)


def lsgan_g_loss(pred_fake: Tensor) -> Tensor:
    """LSGAN generator loss MSE(D(G(x)), 1); any shape -> ()."""
    return F.mse_loss(pred_fake, torch.ones_like(pred_fake))


def _eye_mask(n: int, device: torch.device) -> Tensor:
    """(n, n) bool, True on the diagonal (the positive pair inside a key-similarity matrix)."""
    return torch.eye(n, dtype=torch.bool, device=device)


def patch_nce_loss(q: Tensor, k: Tensor, tau: float = 0.07,
                   negatives_from_batch: bool = False) -> Tensor:
    """CUT's PatchNCE (InfoNCE) loss, spec 1.4.

    q: (B, S, D) query embeddings (output image), k: (B, S, D) key embeddings (input image,
    same S locations). Positive of query i is key i; negatives are the other S-1 keys of the same
    image, or the other B*S-1 keys of the whole batch with ``negatives_from_batch`` (SinCUT).
    Returns the mean cross-entropy over the B*S queries, shape ().
    """
    if q.shape != k.shape or q.dim() != 3:
        raise ValueError(f"q and k must both be (B, S, D), got {tuple(q.shape)} and {tuple(k.shape)}")
    b, s, d = q.shape
    k = k.detach()  # keys are targets only: no gradient into the key branch (CUT)
    pos = (q * k).sum(-1)  # (B, S)
    if negatives_from_batch:
        # one "image" holding all B*S patches: every key of the batch is a candidate negative
        q, k = q.reshape(1, b * s, d), k.reshape(1, b * s, d)
    n = q.shape[1]
    neg = torch.bmm(q, k.transpose(1, 2))  # (B', n, n) all query-key similarities
    # the diagonal is the positive itself; -inf removes it exactly (CUT uses -10/tau ~ e^-143)
    neg = neg.masked_fill(_eye_mask(n, q.device), float("-inf"))
    logits = torch.cat([pos.reshape(-1, n, 1), neg], dim=-1) / tau  # (B', n, 1 + n)
    # cross-entropy with the positive at index 0
    loss = torch.logsumexp(logits, dim=-1) - logits[..., 0]
    return loss.mean()


def channel_classifier_loss(logits_hazy: Tensor, logits_clear: Tensor) -> Tensor:
    """DWFC loss (spec 2.4): BCE-with-logits for the (hazy, clear) classifier pair.

    logits_hazy: (N, 2) for hazy samples (targets y_h=1, y_c=0); logits_clear: (M, 2) for clear
    samples (targets 0, 1). Column 0 = theta_h, column 1 = theta_c. The two classifiers' BCE terms
    are summed (Eq. 8 has one term each) and averaged over the pooled N+M samples; shape ().
    """
    if logits_hazy.shape[-1] != 2 or logits_clear.shape[-1] != 2:
        raise ValueError("classifier logits must have a last dimension of 2 (hazy, clear)")
    target_hazy = logits_hazy.new_tensor([1.0, 0.0]).expand_as(logits_hazy)
    target_clear = logits_clear.new_tensor([0.0, 1.0]).expand_as(logits_clear)
    logits = torch.cat([logits_hazy.reshape(-1, 2), logits_clear.reshape(-1, 2)])
    targets = torch.cat([target_hazy.reshape(-1, 2), target_clear.reshape(-1, 2)])
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # (N+M, 2)
    return bce.sum(-1).mean()


def channel_weights(theta: Tensor, x: Tensor, scale: str = "printed", temperature: float = 1.0) -> Tensor:
    """Channel weights w = softmax_c(s / temperature), s = |theta (.) x| (spec 2.5, Eq. 9-10).

    ``scale`` says how s is normalised first (docs/method.md, section 3.3): ``printed`` not at all (as
    the paper prints it: with unit-norm 256-d keys s is ~1e-3 and the softmax is flat), ``std``
    by its standard deviation over the channels, ``max`` by its maximum. theta: (D,) classifier
    vector, x: (..., D) embeddings (the keys being weighted). Returns (..., D), non-negative,
    summing to 1 over the last dim. Computed without gradient: the weights are a read-out of
    the classifier, which only L_CE trains.
    """
    if scale not in WEIGHT_SCALES:
        raise ValueError(f"scale must be one of {WEIGHT_SCALES}, got {scale!r}")
    with torch.no_grad():
        s = (theta.detach() * x.detach()).abs()
        if scale == "std":
            s = s / s.std(dim=-1, keepdim=True).clamp_min(1e-12)
        elif scale == "max":
            s = s / s.amax(dim=-1, keepdim=True).clamp_min(1e-12)
        return torch.softmax(s / temperature, dim=-1)


def weight_entropy(w: Tensor) -> Tensor:
    """Mean Shannon entropy (nats) of the channel distributions w: (..., D) -> (). For logging;
    log(D) means uniform weights."""
    with torch.no_grad():
        return torch.special.entr(w.detach().float()).sum(-1).mean()


def wpnce_loss(q: Tensor, k_hazy: Tensor, k_clear: Tensor, w_h: Tensor, w_c: Tensor,
               tau: float = 0.07, hazy_pair: str = "swapped") -> Tensor:
    """ODCR's weighted PatchNCE (spec 2.6) as a multi-positive InfoNCE.

    q: (B, S, D) output queries; k_hazy: (B, S, D) hazy-input keys at the same locations;
    w_h: (B, S, D) channel weights of the hazy keys; k_clear: (B, Sc, D) keys of the unpaired
    clear image of the same batch element; w_c: (B, Sc, D) their weights.
    With l(w, z, k) = sum_c w_c k_c z_c / tau, for query i:
      P = l(a, q_i, kh_i) + sum_n l(w_c^n, q_i, kc_n)
      N = l(1-a, q_i, kh_i) + sum_{j!=i} l(1, q_i, kh_j) + sum_n l(1-w_c^n, q_i, kc_n)
    where a = 1-w_h ("swapped", default, spec ambiguity #5) or a = w_h ("literal", as printed).
    loss_i = -log(P / (P + N)) = logsumexp(all logits) - logsumexp(positive logits);
    returns the mean over the B*S queries, shape (). Keys and weights are detached.
    """
    if hazy_pair not in HAZY_PAIR_MODES:
        raise ValueError(f"hazy_pair must be one of {HAZY_PAIR_MODES}, got {hazy_pair!r}")
    if q.dim() != 3 or k_hazy.shape != q.shape or w_h.shape != q.shape:
        raise ValueError("q, k_hazy and w_h must all be (B, S, D)")
    if k_clear.dim() != 3 or w_c.shape != k_clear.shape or k_clear.shape[0] != q.shape[0] \
            or k_clear.shape[2] != q.shape[2]:
        raise ValueError("k_clear and w_c must both be (B, Sc, D) with the B and D of q")
    s = q.shape[1]
    k_hazy, k_clear = k_hazy.detach(), k_clear.detach()
    w_h, w_c = w_h.detach(), w_c.detach()

    # same-location hazy key, split into its w_h and (1 - w_h) channel parts: (B, S)
    qk = q * k_hazy
    hazy_w = (qk * w_h).sum(-1) / tau
    hazy_1mw = (qk * (1.0 - w_h)).sum(-1) / tau
    hazy_pos, hazy_neg = (hazy_1mw, hazy_w) if hazy_pair == "swapped" else (hazy_w, hazy_1mw)

    # other hazy locations, unit weights; the j == i entry belongs to the weighted pair above
    hazy_other = torch.bmm(q, k_hazy.transpose(1, 2)) / tau  # (B, S, S)
    hazy_other = hazy_other.masked_fill(_eye_mask(s, q.device), float("-inf"))

    # clear keys: weights sit on the key side, so fold them into the keys before the matmul
    clear_pos = torch.bmm(q, (w_c * k_clear).transpose(1, 2)) / tau  # (B, S, Sc)
    clear_neg = torch.bmm(q, ((1.0 - w_c) * k_clear).transpose(1, 2)) / tau  # (B, S, Sc)

    pos_logits = torch.cat([hazy_pos.unsqueeze(-1), clear_pos], dim=-1)  # (B, S, 1 + Sc)
    all_logits = torch.cat([pos_logits, hazy_neg.unsqueeze(-1), hazy_other, clear_neg], dim=-1)
    loss = torch.logsumexp(all_logits, dim=-1) - torch.logsumexp(pos_logits, dim=-1)
    return loss.mean()


def l1_identity_loss(output: Tensor, target: Tensor) -> Tensor:
    """Identity loss alternative ``--idt l1`` (spec 2.7): mean |G(C) - C|; images (B, 3, H, W) -> ()."""
    return F.l1_loss(output, target)


# --- priors of the scattering-model output (docs/scattering.md) ----------------------------

def transmission_fit_loss(t: Tensor, target: Tensor) -> Tensor:
    """Warm start: mean |t - target| for t and a (detached) target transmission, both (B, 1, H, W)."""
    return (t - target.detach()).abs().mean()


def distillation_loss(t: Tensor, t_teacher: Tensor, photo: Tensor, airlight: Tensor) -> tuple[Tensor, Tensor]:
    """A student's transmission against its teacher's on the same photo: (mean |t - t_teacher|,
    mean |J - J_teacher|), J = (I - A) / t + A clipped to [0, 1] with the teacher's airlight. The
    image term makes an error where t is small (thick haze) cost what it costs in the output.
    t, t_teacher (B, 1, H, W); photo (B, 3, H, W) in [0, 1]; airlight (B, 3, 1, 1) -> two ()."""
    t_teacher = t_teacher.detach()
    clear = remove_haze(photo, t, airlight).clamp(0.0, 1.0)
    clear_teacher = remove_haze(photo, t_teacher, airlight).clamp(0.0, 1.0)
    return (t - t_teacher).abs().mean(), (clear - clear_teacher).abs().mean()


def dark_channel_loss(clear: Tensor, patch: int = PATCH) -> Tensor:
    """Dark channel energy of a clear image (B, 3, H, W) in [0, 1]: the mean of its dark channel,
    which the prior says is near zero outside sky and bright objects (as PSD, CVPR 2021). ()"""
    return prior_torch.dark_channel(clear, patch).mean()


def edge_aware_smoothness(t: Tensor, guide: Tensor, alpha: float = 10.0) -> Tensor:
    """Total variation of t (B, 1, H, W), each difference weighted by exp(-alpha |d grey(guide)|)
    so that t may jump where the hazy image (B, 3, H, W) in [0, 1] has an edge. ()"""
    g = prior_torch.grey(guide)
    dx_t, dy_t = (t[..., :, 1:] - t[..., :, :-1]).abs(), (t[..., 1:, :] - t[..., :-1, :]).abs()
    wx = torch.exp(-alpha * (g[..., :, 1:] - g[..., :, :-1]).abs())
    wy = torch.exp(-alpha * (g[..., 1:, :] - g[..., :-1, :]).abs())
    return (dx_t * wx).mean() + (dy_t * wy).mean()
