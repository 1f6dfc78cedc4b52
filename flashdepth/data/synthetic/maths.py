"""Small numeric helpers shared by the renderer's modules: config checks and element-wise
(3,)/(3, M) products that give the same bits whatever the BLAS build."""

from __future__ import annotations

import numpy as np

from ...errors import ConfigError

_EPS = 1e-6  # hits closer than this (metres along a unit-z ray) are the ray's own origin, not a surface
_CLEARANCE = 0.5  # metres kept between the camera and every surface, so no frame starts inside an object
_CORNERS = np.array([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)])  # (8, 3) unit cube


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)



def _dot(a: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(3,) . (3, M) -> (M,), element-wise rather than through BLAS: the same bits whatever the BLAS
    build or its thread count (determinism), and no thread start-up on small arrays (speed)."""
    return a[0] * v[0] + a[1] * v[1] + a[2] * v[2]


def _apply(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(3, 3) @ (3, M) -> (3, M), element-wise for the reasons of :func:`_dot`."""
    return m[:, 0:1] * v[0] + m[:, 1:2] * v[1] + m[:, 2:3] * v[2]


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(3,) colours a, b and weights t (M,) -> (3, M)."""
    return a[:, None] + (b - a)[:, None] * t[None, :]


def _axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues: (3, 3) rotation by ``angle`` radians about unit ``axis``."""
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + np.sin(angle) * k + (1.0 - np.cos(angle)) * (k @ k)

