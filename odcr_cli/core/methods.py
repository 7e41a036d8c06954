"""Method definitions: ``odcr`` (default), ``cut`` and ``fastcut`` built from the same parts.

A :class:`~odcr_cli.core.configs.MethodConfig` says which losses and heads a method uses
(docs/method.md, sections 2 and 3.5); :class:`ContrastiveModel` holds the trainable networks of
one method and computes the discriminator loss and the generator-side objective for one batch. The training step and loop
(``odcr_cli.tasks.train.training``) own optimisers, schedules, data and files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from odcr_cli.core import losses
from odcr_cli.core.configs import TRANSMISSION_TERMS_NEED_SCATTERING, GeneratorConfig, MethodConfig
from odcr_cli.core.networks import (
    ChannelClassifiers,
    DiscriminatorConfig,
    PatchDiscriminator,
    ProjectionHead,
    ResnetGenerator,
    init_weights,
)
from odcr_cli.haze import prior_torch
from odcr_cli.haze.network_input import to_signed, to_unit
from odcr_cli.haze.scattering import add_haze, remove_haze


def prior_weight(method: MethodConfig, iteration: int) -> float:
    """Weight of the DCP warm-start term at ``iteration``: constant, or decaying linearly to 0."""
    if method.dcp_warm_iters <= 0:
        return method.lambda_dcp
    return method.lambda_dcp * max(0.0, 1.0 - iteration / method.dcp_warm_iters)


def draw_patch_ids(rng: np.random.Generator, height: int, width: int, count: int) -> torch.Tensor:
    """``min(count, H*W)`` distinct flat positions, drawn on the CPU with numpy, so that a run is the same on any device."""
    n = height * width
    return torch.from_numpy(rng.permutation(n)[: min(count, n)].astype(np.int64))


def gather_patches(feature: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) features and (S,) flat ids -> (B, S, C): the same positions in every image."""
    b, c = feature.shape[:2]
    flat = feature.reshape(b, c, -1)
    return flat[:, :, ids.to(feature.device)].transpose(1, 2)


@dataclass
class StepOutput:
    """Losses of one generator step; ``total`` is what is back-propagated."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


class ContrastiveModel(nn.Module):
    """Generator, discriminator, projection head and (ODCR) channel classifiers of one method."""

    def __init__(self, method: MethodConfig, generator: GeneratorConfig = GeneratorConfig(),
                 discriminator: DiscriminatorConfig = DiscriminatorConfig()) -> None:
        super().__init__()
        if generator.output != "scattering" and method.transmission_terms:
            raise ValueError(TRANSMISSION_TERMS_NEED_SCATTERING)
        self.method = method
        self.generator = init_weights(ResnetGenerator(generator))
        self.discriminator = init_weights(PatchDiscriminator(discriminator))
        channels = self.generator.layer_channels(method.nce_layers)
        self.head = ProjectionHead(channels, dim=method.head_dim, kind=method.head,
                                   orthogonal=method.orthogonal_head)
        self.classifiers = ChannelClassifiers(len(channels), method.head_dim) if method.weighted_nce else None

    # -- forward ------------------------------------------------------------------------------
    def translate(self, hazy: torch.Tensor, clear: torch.Tensor, flip: bool) -> dict[str, torch.Tensor | list]:
        """One generator pass over hazy (and clear, for the identity/ODCR terms) images."""
        m = self.method
        use_clear = m.nce_idt or m.weighted_nce
        real = torch.cat([hazy, clear]) if use_clear else hazy
        if flip:
            real = torch.flip(real, dims=[3])
        fake, feats, est = self.generator.forward_with_features(real, m.nce_layers)
        n = hazy.shape[0]
        out: dict[str, torch.Tensor | list] = {"fake": fake[:n], "idt": fake[n:] if use_clear else None}
        if "t" in est:  # the hazy images' t, unflipped, for the priors
            out["t"] = torch.flip(est["t"][:n], dims=[3]) if flip else est["t"][:n]
        if "airlight" in est:  # one per image, so a flip leaves it as it is
            out["airlight"] = est["airlight"][:n]
        if "t_dcp" in est and not flip:  # under a flip the airlight rule may break ties elsewhere
            out["t_dcp"] = est["t_dcp"][:n]
        # Keys are detached in every loss, so the features of this pass serve as keys: no second
        # encoder pass over the real images (except under a flip, where keys must be unflipped).
        if flip:
            with torch.no_grad():
                feats = self.generator.encode(torch.cat([hazy, clear]) if use_clear else hazy, m.nce_layers)
        feats = [f.detach() for f in feats]
        out["keys_hazy"] = [f[:n] for f in feats]
        out["keys_clear"] = [f[n:] for f in feats] if use_clear else None
        return out

    def discriminator_loss(self, clear: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return losses.lsgan_d_loss(self.discriminator(clear), self.discriminator(fake.detach()))

    def generator_objective(self, hazy: torch.Tensor, clear: torch.Tensor, state: dict,
                            rng: np.random.Generator, flip: bool, iteration: int = 0,
                            synthetic: tuple[torch.Tensor, torch.Tensor] | None = None) -> StepOutput:
        """GAN + contrastive terms for the generator step (D must be frozen by the caller).
        ``synthetic``: (hazy (B, 3, H, W) in [-1, 1], its true t (B, 1, H, W)) made from the clear
        crops, for the semi-supervised transmission term (``lambda_synth``)."""
        m = self.method
        fake, idt = state["fake"], state["idt"]
        terms: dict[str, torch.Tensor] = {"gan": losses.lsgan_g_loss(self.discriminator(fake))}

        queries_in = torch.cat([fake, idt]) if (m.nce_idt and m.idt == "nce") else fake
        q_feats = self.generator.encode(queries_in, m.nce_layers)
        if flip:
            q_feats = [torch.flip(f, dims=[3]) for f in q_feats]
        n = hazy.shape[0]

        nce_terms, idt_terms, ce_terms, entropies = [], [], [], []
        for layer, (qf, kh) in enumerate(zip(q_feats, state["keys_hazy"])):
            ids_h = draw_patch_ids(rng, kh.shape[2], kh.shape[3], m.num_patches)
            def head(x: torch.Tensor, i: int = layer) -> torch.Tensor:
                return self.head.project(x, i)

            z_q = head(gather_patches(qf[:n], ids_h))
            z_kh = head(gather_patches(kh, ids_h))
            if m.nce_idt or m.weighted_nce:
                kc = state["keys_clear"][layer]
                ids_c = draw_patch_ids(rng, kc.shape[2], kc.shape[3], m.num_clear_patches)
                z_kc = head(gather_patches(kc, ids_c))
            if m.weighted_nce:
                assert self.classifiers is not None
                zh_ce, zc_ce = (z_kh, z_kc) if m.ce_trains_head else (z_kh.detach(), z_kc.detach())
                ce_terms.append(losses.channel_classifier_loss(
                    self.classifiers(zh_ce.reshape(-1, zh_ce.shape[-1]), layer),
                    self.classifiers(zc_ce.reshape(-1, zc_ce.shape[-1]), layer)))
                theta = self.classifiers.theta(layer).detach()
                w_h = losses.channel_weights(theta[0], z_kh.detach(), m.weight_scale, m.weight_temperature)
                w_c = losses.channel_weights(theta[1], z_kc.detach(), m.weight_scale, m.weight_temperature)
                entropies.append(losses.weight_entropy(w_h))
                nce_terms.append(losses.wpnce_loss(z_q, z_kh.detach(), z_kc.detach(), w_h, w_c,
                                                   tau=m.nce_t, hazy_pair=m.wpnce_hazy_pair))
            else:
                nce_terms.append(losses.patch_nce_loss(z_q, z_kh.detach(), tau=m.nce_t,
                                                       negatives_from_batch=m.negatives_from_batch))
            if m.nce_idt and m.idt == "nce":
                z_qi = head(gather_patches(qf[n:], ids_c))
                idt_terms.append(losses.patch_nce_loss(z_qi, z_kc.detach(), tau=m.nce_t,
                                                       negatives_from_batch=m.negatives_from_batch))

        terms["nce"] = torch.stack(nce_terms).mean()
        if m.nce_idt:
            terms["idt"] = (torch.stack(idt_terms).mean() if m.idt == "nce"
                            else losses.l1_identity_loss(idt, clear))
        if ce_terms:
            terms["ce"] = torch.stack(ce_terms).mean()
            terms["w_entropy"] = torch.stack(entropies).mean().detach()
            for layer, e in enumerate(entropies):
                terms[f"w_entropy_{m.nce_layers[layer]}"] = e.detach()

        total = m.lambda_gan * terms["gan"]
        if m.halve_nce and m.nce_idt:
            total = total + m.lambda_nce * 0.5 * (terms["nce"] + terms["idt"])
        else:
            total = total + m.lambda_nce * terms["nce"]
            if m.nce_idt:
                total = total + m.lambda_idt * terms["idt"]
        if "ce" in terms:
            total = total + m.lambda_ce * terms["ce"]
        total = total + self._priors(hazy, state, iteration, terms)
        if m.lambda_synth > 0 and synthetic is not None:
            terms["synth"] = self.synthetic_transmission_loss(*synthetic)
            total = total + m.lambda_synth * terms["synth"]
        if m.lambda_density > 0:  # drawn last, so that the patches of a run without it are unchanged
            lo, hi = np.log(m.density_k)
            k = torch.from_numpy(np.exp(rng.uniform(lo, hi, size=n))).to(hazy)[:, None, None, None]
            terms["density"] = self.density_consistency_loss(hazy, state["t"], state["airlight"], k)
            total = total + m.lambda_density * terms["density"]
        return StepOutput(total=total, terms=terms)

    def density_consistency_loss(self, hazy: torch.Tensor, t: torch.Tensor, airlight: torch.Tensor,
                                 k: torch.Tensor) -> torch.Tensor:
        """Mean |t' - t**k|: the generator's clear image of ``hazy`` (B, 3, H, W, [-1, 1]) re-hazed
        with ``t**k`` (its own t (B, 1, H, W) and airlight (B, 3); k (B, 1, 1, 1)) shows the same
        scene under thicker (k > 1) or thinner haze, and t' is the generator's transmission of it.
        The re-hazed image and its target are constants (no gradient through the first pass), so
        the term asks the network to be consistent about density, not to change its first answer
        (docs/scattering.md, Training)."""
        with torch.no_grad():
            a = airlight.detach()[:, :, None, None]
            clear = remove_haze(to_unit(hazy), t.detach(), a).clamp(0.0, 1.0)
            t_k = (t.detach() ** k).clamp(min=self.generator.config.t_min)
            rehazed = to_signed(add_haze(clear, t_k, a))
        t_new = self.generator.haze_estimate(rehazed, self.generator.raw_outputs(rehazed))["t"]
        return losses.transmission_fit_loss(t_new, t_k)

    def synthetic_transmission_loss(self, hazy: torch.Tensor, t_true: torch.Tensor) -> torch.Tensor:
        """Mean |t - t_true| of the generator's transmission on hazy images whose t is known
        (synthetic haze): the one term that says how thick haze is, which the unpaired losses and
        the prior cannot (docs/scattering.md, Training)."""
        t = self.generator.haze_estimate(hazy, self.generator.raw_outputs(hazy))["t"]
        return losses.transmission_fit_loss(t, t_true)

    def _priors(self, hazy: torch.Tensor, state: dict, iteration: int, terms: dict[str, torch.Tensor]) -> torch.Tensor | float:
        """Weighted sum of the scattering priors that are switched on (their terms are logged)."""
        m, total = self.method, 0.0
        hazy01 = to_unit(hazy)
        w_dcp = prior_weight(m, iteration)
        if w_dcp > 0:
            target = state.get("t_dcp")  # the output's own DCP prior when it has one: no second estimate
            if target is None:
                g = self.generator.config
                target = prior_torch.dcp_transmission(hazy01, prior_torch.estimate_airlight(hazy01, g.airlight_patch, g.airlight_top))
            terms["dcp"] = losses.transmission_fit_loss(state["t"], target)
            total = total + w_dcp * terms["dcp"]
        if m.lambda_dark > 0:
            terms["dark"] = losses.dark_channel_loss(to_unit(state["fake"]))
            total = total + m.lambda_dark * terms["dark"]
        if m.lambda_tv > 0:
            terms["tv"] = losses.edge_aware_smoothness(state["t"], hazy01)
            total = total + m.lambda_tv * terms["tv"]
        return total

    # -- parameter groups ---------------------------------------------------------------------
    def head_euclidean_parameters(self) -> list[nn.Parameter]:
        params = list(self.head.euclidean_parameters())
        if self.classifiers is not None:
            params += list(self.classifiers.parameters())
        return params
