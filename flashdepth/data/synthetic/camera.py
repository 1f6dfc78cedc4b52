"""The camera: a smooth seeded trajectory and the look rotation of an OpenCV camera."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _wave(params: np.ndarray, t: float | np.ndarray) -> float | np.ndarray:
    """(amplitude, rate rad/s, phase) -> amplitude * sin(rate t + phase)."""
    return params[0] * np.sin(params[1] * t + params[2])


@dataclass(frozen=True, eq=False, kw_only=True)
class CameraPath:
    """A smooth camera trajectory: a circular arc at constant speed plus low-frequency sway and bob,
    looking along the arc's heading plus a slow look-around; pitch and roll oscillate gently.

    All angles in radians; every ``*_wave`` is (amplitude, rate rad/s, phase).
    """

    start: np.ndarray  # (3,) position at t = 0
    heading: float  # yaw at t = 0; 0 looks along +x, positive turns towards +y
    speed: float  # m/s along the arc
    turn: float  # rad/s: the arc's curvature times the speed
    look_offset: float = 0.0  # constant yaw offset from the direction of travel (strafing)
    pan: float = 0.0  # rad/s: a steady turn of the view alone (the path keeps its course), positive towards +y
    look_wave: np.ndarray = field(default_factory=lambda: np.zeros(3))
    pitch: float = 0.0  # mean pitch, positive looks up
    pitch_wave: np.ndarray = field(default_factory=lambda: np.zeros(3))
    roll_wave: np.ndarray = field(default_factory=lambda: np.zeros(3))
    roll: float = 0.0  # constant roll (a tilted camera)
    sway_wave: np.ndarray = field(default_factory=lambda: np.zeros(3))  # sideways, metres
    bob_wave: np.ndarray = field(default_factory=lambda: np.zeros(3))  # vertical, metres

    def positions(self, times: np.ndarray) -> np.ndarray:
        """(K,) times -> (K, 3) camera centres."""
        t = np.asarray(times, dtype=np.float64)
        # Arc of turn rate k: chord length s t sinc(k t / 2) at heading psi0 + k t / 2 (exact, and
        # well-defined at k = 0, where np.sinc's removable singularity gives a straight line).
        chord = self.speed * t * np.sinc(self.turn * t / (2 * np.pi))  # (K,)
        mid = self.heading + self.turn * t / 2
        heading = self.heading + self.turn * t
        sway = _wave(self.sway_wave, t) - _wave(self.sway_wave, 0.0)  # starts at zero
        bob = _wave(self.bob_wave, t) - _wave(self.bob_wave, 0.0)
        out = np.empty((len(t), 3))
        out[:, 0] = self.start[0] + chord * np.cos(mid) - sway * np.sin(heading)
        out[:, 1] = self.start[1] + chord * np.sin(mid) + sway * np.cos(heading)
        out[:, 2] = self.start[2] + bob
        return out

    def yaw(self, time: float) -> float:
        return (self.heading + self.turn * time + self.look_offset + self.pan * time
                + float(_wave(self.look_wave, time)))

    def pose(self, time: float) -> np.ndarray:
        """(4, 4) camera-to-world at ``time``: columns 0-2 are the camera's right, down and forward
        axes in world coordinates (OpenCV), column 3 its centre."""
        pose = np.eye(4)
        pose[:3, :3] = look_rotation(self.yaw(time), self.pitch + float(_wave(self.pitch_wave, time)),
                                     self.roll + float(_wave(self.roll_wave, time)))
        pose[:3, 3] = self.positions(np.array([time]))[0]
        return pose


def look_rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) camera-to-world rotation of an OpenCV camera (x right, y down, z forward) in the z-up
    world: ``yaw`` from +x towards +y, ``pitch`` up, ``roll`` turns the camera's x axis towards its
    y axis (clockwise looking along the optical axis; the image content turns counter-clockwise)."""
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    forward = np.array([cp * cy, cp * sy, sp])
    right0 = np.array([sy, -cy, 0.0])  # horizontal: a level camera has no roll
    down0 = np.cross(forward, right0)  # completes a right-handed frame (right x down = forward)
    cr, sr = np.cos(roll), np.sin(roll)
    right = cr * right0 + sr * down0
    down = -sr * right0 + cr * down0
    return np.stack([right, down, forward], axis=1)

