"""The papers' datasets, as their owners distribute them, turned into posecli's layout.

    from posecli.data.datasets import convert
    summary = convert("cars3d", "downloads/cars", "data/cars3d", size=64)

One module per dataset in ``DATASETS`` (name -> module); each has ``plan(src, opts)``
that checks the source and returns the units to write; ``writer.DatasetWriter``
does the layout, labels, split bookkeeping, resume and atomic writes for all of
them. posecli never downloads a dataset: see the README for where to get each.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ...errors import InputError, UsageError
from .common import Options

__all__ = ["DATASETS", "convert"]

DATASETS = {  # name -> module; the order of --help
    "cars3d": "cars3d",
    "smallnorb": "smallnorb",
    "shapes3d": "shapes3d",
    "chairs": "chairs",
    "celeba": "celeba",
    "kth": "kth",
}


ARCHIVES = {".tar", ".tar.gz", ".tgz", ".zip", ".7z", ".rar"}


def convert(name: str, src: str | Path, out: str | Path, *, overwrite: bool = False, skip_existing: bool = False,
            progress=None, **options) -> dict:
    """Convert the dataset ``name`` found at ``src`` into ``out``; returns a summary dict.

    ``options``: the fields of ``common.Options`` (size, seed, test_ids, test_count,
    test_fraction, variant, camera, crop, fps, actions, scenarios); None means the
    dataset's default. ``progress``: None or a callable like
    ``posecli.progress.progress`` (total=, desc=, unit=) returning a bar with ``update``.
    The source is only read; errors are one-line PoseCliErrors naming the file.
    """
    from .writer import DatasetWriter

    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    module = importlib.import_module(f"{__name__}.{DATASETS[name]}")
    src, out = Path(src), Path(out)
    if not src.exists():
        raise InputError("no such file or folder", src)
    if src.is_file() and (src.suffix.lower() in ARCHIVES or "".join(src.suffixes[-2:]).lower() in ARCHIVES):
        raise InputError("an archive: unpack it first and give the folder (posecli data reads the unpacked "
                         "files, as README 'Datasets of the papers' lists them)", src)
    if out.resolve() == src.resolve() or src.resolve() in out.resolve().parents:
        raise UsageError(f"OUT {out} is inside the source {src}; posecli data never writes into a source")
    given = {k for k, v in options.items() if v is not None}
    opts = Options(**{k: v for k, v in options.items() if v is not None}, given=given)
    for key in ("test_ids", "actions", "scenarios"):
        value = getattr(opts, key)
        if isinstance(value, str):
            setattr(opts, key, tuple(v.strip() for v in value.split(",") if v.strip()))
    plan = module.plan(src, opts)  # checks the whole source before anything is written
    meta = {"dataset": name, "source": str(src.resolve()), "options": plan.options, "split": plan.split}
    import logging

    for note in plan.notes:
        logging.getLogger("posecli").warning(f"{name}: {note}")
    if progress is None:
        writer = DatasetWriter(out, meta, overwrite=overwrite, skip_existing=skip_existing)
        summary = writer.run(plan.units)
    else:
        with progress(total=plan.total, desc=f"data {name}", unit=plan.unit) as bar:
            writer = DatasetWriter(out, meta, overwrite=overwrite, skip_existing=skip_existing, progress=bar.update)
            summary = writer.run(plan.units)
    summary["notes"] = plan.notes
    return summary
