"""Synthetic ground truth: toy cars, toy heads and a street scene whose identities and poses are known.

Everything is ray-cast analytically with numpy (``raycast``), seeded, and
byte-identical for a seed whatever the number of worker processes:

- ``cars``: ``render_cars(out, ...)`` writes a Cars3D-like dataset; ``car_params(seed, i)``
  and ``render_car(params, azimuth, elevation, size)`` render one car in memory.
- ``heads``: ``render_heads(out, ...)`` (yaw x pitch x mouth, optional talking-head
  clips with sound); ``head_params(seed, i)`` and ``render_head(params, yaw, pitch, mouth, size)``.
- ``scene``: ``render_scene(out, ...)`` a street with cars at known boxes and the
  ground truth with every car replaced by one identity.

Dataset images sit on a plain ``raycast.BACKGROUND`` (RGB 230, 230, 230).
"""

from .cars import car_params, render_car, render_car_rgba, render_cars
from .heads import head_params, render_head, render_head_rgba, render_heads
from .raycast import BACKGROUND
from .scene import render_scene

__all__ = ["BACKGROUND", "car_params", "render_car", "render_car_rgba", "render_cars", "head_params", "render_head",
           "render_head_rgba", "render_heads", "render_scene"]
