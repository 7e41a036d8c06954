"""Classical image numerics, numpy + OpenCV only: box and guided filters, the dark channel prior,
image-quality metrics (PSNR, SSIM) and FADE, the referenceless fog density."""
