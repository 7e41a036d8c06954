"""The camera's motion between two frames, as one similarity transform (shift, rotation, zoom):
corners tracked with pyramidal Lucas-Kanade and fitted robustly (RANSAC), OpenCV only. Video
uses it to carry what it knows of the previous frame (its transmission, the network's last
output) onto the current one before smoothing over time (:mod:`odcr_cli.engine.stream`)."""

from __future__ import annotations

import cv2
import numpy as np

MAX_CORNERS = 300
MIN_TRACKED = 12  # fewer tracked corners than this (dense fog, a flat sky): no estimate


def global_motion(previous: np.ndarray, current: np.ndarray) -> np.ndarray | None:
    """2x3 float32 map from ``previous`` pixel coordinates to ``current`` ones (both HxW uint8 grey,
    the same size), or None where too little can be tracked to say."""
    corners = cv2.goodFeaturesToTrack(previous, MAX_CORNERS, qualityLevel=0.01, minDistance=7, blockSize=7)
    if corners is None or len(corners) < MIN_TRACKED:
        return None
    moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, current, corners, None, winSize=(21, 21), maxLevel=3)
    ok = status.reshape(-1) == 1
    if ok.sum() < MIN_TRACKED:
        return None
    matrix, inliers = cv2.estimateAffinePartial2D(corners[ok], moved[ok], method=cv2.RANSAC,
                                                  ransacReprojThreshold=1.5)
    if matrix is None or inliers is None or inliers.sum() < MIN_TRACKED:
        return None
    return matrix.astype(np.float32)


def warp(a: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """HxW (or HxWxC) ``a`` of the previous frame moved onto the current one by ``matrix``
    (bilinear; what enters from outside the previous frame repeats its border)."""
    h, w = a.shape[:2]
    return cv2.warpAffine(a, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def seen_before(shape: tuple[int, int], matrix: np.ndarray, margin: int = 2) -> np.ndarray:
    """HxW bool: the current frame's pixels that the previous frame saw (``margin`` px inside it)."""
    h, w = shape
    inside = cv2.warpAffine(np.ones((h, w), np.uint8), matrix, (w, h), flags=cv2.INTER_NEAREST,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if margin:
        inside = cv2.erode(inside, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    return inside.astype(bool)
