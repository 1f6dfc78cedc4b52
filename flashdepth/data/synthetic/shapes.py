"""Scene primitives: analytic ray intersection, surface normals and texture coordinates."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .maths import _CORNERS, _EPS, _apply, _axis_angle, _dot
from .textures import Texture


@dataclass(frozen=True, eq=False, kw_only=True)
class Motion:
    """How an object moves during the clip (times in seconds from the first frame).

    Centre: ``c0 + velocity * t + (0, 0, bob * sin(bob_rate * t))``. Orientation: a spin of
    ``spin`` rad/s about the vertical axis, or, with ``roll_radius`` > 0, rolling without slipping
    along the velocity (a ball on the ground).
    """

    velocity: np.ndarray  # (3,) m/s
    spin: float = 0.0
    bob: float = 0.0
    bob_rate: float = 0.0
    roll_radius: float = 0.0

    def offset(self, times: np.ndarray) -> np.ndarray:
        """(K,) times -> (K, 3) displacement from the initial centre."""
        out = np.outer(times, self.velocity)  # (K, 3)
        out[:, 2] += self.bob * np.sin(self.bob_rate * times)
        return out

    def rotation(self, time: float) -> np.ndarray:
        """(3, 3) rotation applied on top of the initial orientation at ``time``."""
        if self.roll_radius > 0:
            horizontal = np.array([self.velocity[0], self.velocity[1], 0.0])
            speed = float(np.linalg.norm(horizontal))
            if speed == 0:
                return np.eye(3)
            axis = np.cross([0.0, 0.0, 1.0], horizontal / speed)  # ground contact point stays still
            return _axis_angle(axis, speed * time / self.roll_radius)
        return _axis_angle(np.array([0.0, 0.0, 1.0]), self.spin * time)




@dataclass(frozen=True, eq=False, kw_only=True)
class Primitive:
    """Base of the scene primitives. ``kind`` is the layout family it belongs to ("ground", "box",
    "wall", "sphere", "pole"); ``motion`` is None for static objects. ``rotation`` maps object to
    world coordinates; the texture is evaluated in object coordinates."""

    kind: str = ""
    texture: Texture = field(default_factory=Texture)
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))  # (3,) world position at t = 0
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))  # (3, 3) object -> world at t = 0
    motion: Optional[Motion] = None

    def at(self, time: float) -> tuple[np.ndarray, np.ndarray]:
        """(centre (3,), rotation (3, 3)) at ``time``."""
        if self.motion is None:
            return self.center, self.rotation
        return self.center + self.motion.offset(np.array([time]))[0], self.motion.rotation(time) @ self.rotation

    def intersect(self, origin: np.ndarray, d: np.ndarray, dd: np.ndarray, time: float) -> np.ndarray:
        """Ray parameter of the nearest hit in front of ``origin`` (3,) along rays d (3, N) with
        squared lengths dd (N,); +inf where a ray misses. With rays of unit camera-z the parameter
        is the z-depth."""
        raise NotImplementedError

    def surface(self, p: np.ndarray, time: float) -> tuple[np.ndarray, np.ndarray]:
        """(unit normals (3, M), object coordinates (3, M)) at surface points p (3, M)."""
        raise NotImplementedError

    def hull(self, time: float) -> Optional[np.ndarray]:
        """(P, 3) world points whose convex hull contains the primitive at ``time`` (for culling);
        None if unbounded."""
        raise NotImplementedError

    def clearance(self, points: np.ndarray, times: np.ndarray) -> float:
        """Smallest distance (metres) from points (K, 3) at times (K,) to the surface; a lower bound
        where exactness is not worth the code (moving objects use their bounding sphere)."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False, kw_only=True)
class Ground(Primitive):
    """The infinite plane z = 0, seen from above; its texture is in world coordinates."""

    kind: str = "ground"

    def intersect(self, origin, d, dd, time):
        if origin[2] <= 0:
            return np.full(d.shape[1], np.inf)
        with np.errstate(divide="ignore"):
            t = -origin[2] / d[2]  # (N,)
        return np.where(t > _EPS, t, np.inf)  # rays at or above the horizon never reach it

    def surface(self, p, time):
        normal = np.zeros_like(p)  # (3, M)
        normal[2] = 1.0
        return normal, p

    def hull(self, time):
        return None

    def clearance(self, points, times):
        return float(points[:, 2].min())


@dataclass(frozen=True, eq=False, kw_only=True)
class Sphere(Primitive):
    kind: str = "sphere"
    radius: float = 1.0

    def intersect(self, origin, d, dd, time):
        c, _ = self.at(time)
        oc = origin - c  # (3,)
        c0 = float(oc @ oc) - self.radius ** 2
        if c0 <= 0:  # the camera is inside: nothing sensible to draw (scenes keep clear of this)
            return np.full(d.shape[1], np.inf)
        b = _dot(oc, d)  # (N,) half the linear coefficient of |o + t d - c|^2 = r^2
        with np.errstate(invalid="ignore", divide="ignore"):
            # The near root as c0 / (far-root numerator): no cancellation when the ray grazes.
            t = c0 / (np.sqrt(b * b - dd * c0) - b)  # (N,) NaN where the ray misses
        return np.where(t > _EPS, t, np.inf)  # rays pointing away give negative t

    def surface(self, p, time):
        c, rot = self.at(time)
        rel = p - c[:, None]  # (3, M)
        return rel / self.radius, _apply(rot.T, rel)

    def hull(self, time):
        return self.at(time)[0] + self.radius * _CORNERS  # the bounding cube

    def clearance(self, points, times):
        centres = self._centres(times)  # (K, 3)
        return float((np.linalg.norm(points - centres, axis=1) - self.radius).min())

    def _centres(self, times: np.ndarray) -> np.ndarray:
        if self.motion is None:
            return np.broadcast_to(self.center, (len(times), 3))
        return self.center + self.motion.offset(times)


@dataclass(frozen=True, eq=False, kw_only=True)
class Box(Primitive):
    """An oriented box; walls are thin boxes (kind "wall")."""

    kind: str = "box"
    half: np.ndarray = field(default_factory=lambda: np.ones(3))  # (3,) half extents along object x, y, z

    def intersect(self, origin, d, dd, time):
        c, rot = self.at(time)
        o = rot.T @ (origin - c)  # (3,) origin in box coordinates
        if np.all(np.abs(o) < self.half):
            return np.full(d.shape[1], np.inf)
        dl = _apply(rot.T, d)  # (3, N) directions in box coordinates
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = 1.0 / dl  # (3, N) +-inf for rays parallel to a slab
            t1 = (-self.half - o)[:, None] * inv  # (3, N)
            t2 = (self.half - o)[:, None] * inv  # (3, N)
        # fmin/fmax skip the NaN of 0 * inf (origin exactly on a slab plane, ray parallel to it).
        lo, hi = np.fmin(t1, t2), np.fmax(t1, t2)  # (3, N) entry and exit of each slab
        near = np.maximum(np.maximum(lo[0], lo[1]), lo[2])  # (N,) entry into the last slab
        far = np.minimum(np.minimum(hi[0], hi[1]), hi[2])  # (N,) exit from the first slab
        return np.where((near <= far) & (near > _EPS), near, np.inf)

    def surface(self, p, time):
        c, rot = self.at(time)
        local = _apply(rot.T, p - c[:, None])  # (3, M)
        axis = np.argmax(np.abs(local) / self.half[:, None], axis=0)  # (M,) the face the point lies on
        columns = np.arange(p.shape[1])
        normal = np.zeros_like(local)  # (3, M)
        normal[axis, columns] = np.sign(local[axis, columns])
        return _apply(rot, normal), local

    def hull(self, time):
        c, rot = self.at(time)
        return c + (_CORNERS * self.half) @ rot.T

    def clearance(self, points, times):
        if self.motion is not None:  # bounding sphere: enough to keep the camera out
            centres = self.center + self.motion.offset(times)  # (K, 3)
            return float((np.linalg.norm(points - centres, axis=1) - np.linalg.norm(self.half)).min())
        q = np.abs((points - self.center) @ self.rotation) - self.half  # (K, 3) per-axis excess
        outside = np.linalg.norm(np.maximum(q, 0.0), axis=1)
        inside = np.minimum(q.max(axis=1), 0.0)
        return float((outside + inside).min())


@dataclass(frozen=True, eq=False, kw_only=True)
class Pole(Primitive):
    """A vertical cylinder standing on the ground: ``center`` is the base, a capped top at ``height``."""

    kind: str = "pole"
    radius: float = 0.08
    height: float = 4.0

    def intersect(self, origin, d, dd, time):
        c, _ = self.at(time)
        ox, oy = origin[0] - c[0], origin[1] - c[1]
        n = d.shape[1]
        t = np.full(n, np.inf)
        c0 = ox * ox + oy * oy - self.radius ** 2
        if c0 > 0:  # camera outside the infinite cylinder: the side can be hit
            a = d[0] * d[0] + d[1] * d[1]  # (N,)
            b = ox * d[0] + oy * d[1]  # (N,)
            with np.errstate(invalid="ignore", divide="ignore"):
                side = c0 / (np.sqrt(b * b - a * c0) - b)  # (N,) near root, NaN on a miss
            z = origin[2] - c[2] + side * d[2]  # (N,) height of the hit above the base
            t = np.where((side > _EPS) & (z >= 0) & (z <= self.height), side, np.inf)
        if origin[2] - c[2] > self.height:  # the top is visible only from above it
            with np.errstate(divide="ignore", invalid="ignore"):
                tc = (c[2] + self.height - origin[2]) / d[2]  # (N,)
                x, y = ox + tc * d[0], oy + tc * d[1]
            cap = (tc > _EPS) & (x * x + y * y <= self.radius ** 2)
            t = np.where(cap, np.fmin(t, tc), t)
        return t

    def surface(self, p, time):
        c, rot = self.at(time)
        rel = p - c[:, None]  # (3, M)
        normal = np.zeros_like(rel)
        normal[:2] = rel[:2] / self.radius
        top = rel[2] >= self.height * (1 - 1e-9)  # side points sit strictly below the rim but for rounding
        normal[:, top] = np.array([[0.0], [0.0], [1.0]])
        return normal, _apply(rot.T, rel)

    def hull(self, time):
        c, _ = self.at(time)
        half = np.array([self.radius, self.radius, self.height / 2])
        return c + half * (_CORNERS + [0.0, 0.0, 1.0])  # the bounding prism, base at the centre

    def clearance(self, points, times):
        rel = points - self.center  # (K, 3)
        radial = np.maximum(np.hypot(rel[:, 0], rel[:, 1]) - self.radius, 0.0)
        above = np.maximum(rel[:, 2] - self.height, 0.0)
        return float(np.hypot(radial, above).min())

