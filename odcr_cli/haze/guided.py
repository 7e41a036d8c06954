"""The grey-guide guided filter (He, Sun and Tang, ECCV 2010), written once for any array type:
numpy callers (:mod:`odcr_cli.haze.filters`, OpenCV's box mean) and torch callers
(:mod:`odcr_cli.haze.prior_torch`, average pooling) pass their own box mean. No imports: plain arithmetic."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


def guided_filter(box: Callable[[T, int], T], guide: T, src: T, r: int, eps: float) -> T:
    """``src`` smoothed within (2r+1)^2 windows but following the edges of ``guide`` (same shapes);
    ``eps`` is the variance below which the guide's edges are smoothed away."""
    m_i, m_p = box(guide, r), box(src, r)
    var = box(guide * guide, r) - m_i * m_i  # type: ignore[operator]
    cov = box(guide * src, r) - m_i * m_p  # type: ignore[operator]
    a = cov / (var + eps)  # type: ignore[operator]
    b = m_p - a * m_i  # type: ignore[operator]
    return box(a, r) * guide + box(b, r)  # type: ignore[operator]
