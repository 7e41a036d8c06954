"""How much of a photo's detail is the camera's and the codec's: the noise floor of one photo.

J = (I - A) / t + A multiplies the photo's detail by 1 / t, the errors of its camera and codec
included: sensor grain, a JPEG's 8x8 blocks (its block means are quantised in steps of the luma
DC quantiser / 8 levels), a video codec's macroblocks, and the 1-level steps of 8-bit gradients.
In dense fog 1 / t reaches 5 to 10 and these become specks, checkerboards and contour rings.
The recovery (``odcr_cli.haze.inversion.recover``) amplifies detail only where its local
energy stands above this floor; here the floor is measured, per photo:

* from the pixels: the local energy of the detail in the flattest part of the photo (a low
  percentile over the unclipped pixels). Whatever the flattest tenth of a photo holds is not
  scene texture that a user wants stretched: on a clean render it is ~0 (or the 8-bit step), on a
  q50 JPEG its blocks, on a noisy frame its grain. This needs no metadata, so it serves PNG
  screenshots of JPEGs and video frames alike;
* from what the file says (:class:`Source`): the quantisation step of its depth (1/255 for 8 bits,
  nothing for 16-bit or float input), and for a JPEG the step of its block means, from the
  quantisation tables the image reader keeps (``odcr_cli.files.imageio``).

The floor is the larger of the two (a photo without flat regions cannot say much; the file's own
quantisation is a lower bound). numpy + OpenCV; a percentile of a subsampled map, a few ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The flattest FLOOR_PERCENTILE % of a photo's unclipped pixels say what its camera and codec
# leave in flat regions; pixels darker than CLIP_LOW or brighter than CLIP_HIGH are clipped (no
# detail left to measure) and never count. Chosen on dev/real_hazy and the dev pairs saved as JPEG
# (benchmarks/clean_recovery.py).
FLOOR_PERCENTILE = 10.0
CLIP_LOW, CLIP_HIGH = 0.02, 0.98
# The map is read on every FLOOR_STRIDE-th pixel of each row and column: the percentile is a
# statistic of the whole photo, and 1/16 of its pixels estimate it as well.
FLOOR_STRIDE = 4
EIGHT_BIT = 1.0 / 255.0
# A step of q in a smooth gradient (8-bit levels, a JPEG's block means) leaves the detail at +-q / 2
# on either side of it for tens of pixels: its local energy reaches (q / 2)^2.
STEP_ENERGY = 0.25


@dataclass(frozen=True)
class Source:
    """What the file says about its own noise: ``step``, its quantisation step in [0, 1] units
    (1/255 for 8 bits; 0 for 16-bit or float input, whose steps are invisible); ``block_step``,
    for a JPEG the step of its 8x8 luma block means (DC quantiser / 8, in [0, 1] units; 0: not a
    JPEG, or unknown)."""

    step: float = EIGHT_BIT
    block_step: float = 0.0

    @property
    def variance(self) -> float:
        """The local energy its own quantisation leaves in the detail: its depth's steps and its
        block means' (their errors are independent: the energies add)."""
        return STEP_ENERGY * (self.step ** 2 + self.block_step ** 2)


def jpeg_block_step(quantization: dict | None) -> float:
    """The step of a JPEG's 8x8 luma block means from its quantisation tables (Pillow's
    ``Image.quantization``: table 0 is luma, its first entry the DC quantiser; a block's DC
    coefficient is 8 times its mean), in [0, 1] units; 0 without tables."""
    if not quantization or 0 not in quantization or not len(quantization[0]):
        return 0.0
    return float(quantization[0][0]) / 8.0 * EIGHT_BIT


def source_for(dtype: np.dtype, quantization: dict | None = None) -> Source:
    """The :class:`Source` of pixels of this ``dtype`` read from a file with these JPEG tables."""
    step = EIGHT_BIT if np.dtype(dtype) == np.uint8 else 0.0
    return Source(step=step, block_step=jpeg_block_step(quantization))


def noise_floor(energy: np.ndarray, luma: np.ndarray, source: Source | None = None) -> float:
    """The variance of the detail below which it is the camera's and the codec's: ``energy``, the
    local energy (mean square) of the luma's detail, HxW; ``luma`` HxW in [0, 1]; see module doc."""
    s = FLOOR_STRIDE
    e, y = energy[::s, ::s], luma[::s, ::s]
    valid = e[(y > CLIP_LOW) & (y < CLIP_HIGH)]
    measured = 0.0
    if valid.size:
        k = int(valid.size * FLOOR_PERCENTILE / 100.0)
        measured = float(np.partition(valid, k)[k])
    return max(measured, source.variance if source is not None else 0.0)
