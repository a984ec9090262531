"""Stable Diffusion pipelines (1.x, 2.x, SDXL) in diffusers' folder layout: owl draw and
/v1/images/generations. diffusers and torch are imported when a drawer is made."""

from owl.engine.diffusers.drawer import DiffusersDrawer

__all__ = ["DiffusersDrawer"]
