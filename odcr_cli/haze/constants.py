"""Every number of the method, said once (docs/scattering.md says where each was measured). No
imports: the command line reads them for its help text before numpy is loaded."""

from __future__ import annotations

# -- the dark channel prior (He, Sun and Tang 2009): prior.py (numpy) and prior_torch.py (torch) --
PATCH = 15             # dark-channel window, px
OMEGA = 0.95           # fraction of the haze the prior removes
TOP = 0.001            # airlight: mean colour of this fraction of the brightest dark-channel pixels
EPS = 1e-3             # guided-filter regularisation of t
AIRLIGHT_FLOOR = 0.05  # a black photo must not divide by ~0
LUMA = (0.299, 0.587, 0.114)  # the grey guide: OpenCV's RGB2GRAY weights

# -- the transmission t: transmission.py (numpy) and transmission_torch.py (torch) --
# t is floored here before the inversion divides by it: the floor bounds the noise gain 1 / t.
# The scattering network's t_min, the classical prior's t0 and the depth PNG's range.
T_MIN = 0.1
# A prior transmission is clamped to [1%, 99%] of (t_min, 1) before its logit is taken, so that
# the logit stays finite (|logit| <= 4.6) where the dark channel prior says 0 or 1.
PRIOR_CLAMP = 0.01
# --strength s removes that fraction of the haze, t -> 1 - s (1 - t) (0: the input, 1: the model's
# t); above 1 it reads the haze as s times as thick, t -> t ** s, up to MAX_STRENGTH; floored at T_MIN.
MAX_STRENGTH = 2.0

# -- what the network sees: network_input.py --
# A scattering model runs its network on a copy whose longer side is at most MODEL_SIDE (unless
# its weights record a smaller ``inference_side``, as a distilled student does), on every device
# (t is smooth; the photo's detail comes from the full-resolution inversion), framed by MARGIN px
# of mirrored context that is cropped off its outputs: the network's zero-padded strided
# convolutions bend its t within about 40 px of an edge (a band along a flat sky), and the margin
# moves that out of the photo. 384 + 32 px scored above 512 px without a margin on the dev pairs,
# on 20 % fewer network pixels (benchmarks/readout_arms.py --side --pad; docs/scattering.md).
MODEL_SIDE = 384
MARGIN = 32
SIZE_MULTIPLE = 4      # the network's two stride-2 downsamplings
MIN_SIDE = 16          # its reflection pads need a few pixels at 1/4 resolution
