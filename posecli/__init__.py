"""posecli: learn identity/pose models from images and videos, and edit with them.

The package is importable without torch; heavy modules load on first use.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
