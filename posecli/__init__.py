"""posecli: learn identity/pose models from images and videos, and edit with them.

The library API, importable without loading torch until first use:

    from posecli import load_model, swap, animate, composite, train, evaluate
    model = load_model("cars")                    # a PoseModel (bundled name or path)
    out = swap(model, id_pixels, pose_pixels)     # uint8 HxWx3 in, uint8 out
"""

__version__ = "0.1.0"

_API = {
    "load_model": ("posecli.modelfile", "load_model"),
    "save_model": ("posecli.modelfile", "save_model"),
    "read_image": ("posecli.media.images", "read_image"),
    "write_image": ("posecli.media.images", "write_image"),
    "encode_images": ("posecli.pipelines.encode", "encode_images"),
    "swap": ("posecli.pipelines.swap", "swap"),
    "swap_matrix": ("posecli.pipelines.swap", "swap_matrix"),
    "animate": ("posecli.pipelines.animate", "animate"),
    "composite": ("posecli.pipelines.composite", "composite"),
    "train": ("posecli.training.api", "train"),
    "TrainOptions": ("posecli.training.options", "TrainOptions"),
    "evaluate": ("posecli.eval", "evaluate"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        module, attr = _API[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'posecli' has no attribute {name!r}")
