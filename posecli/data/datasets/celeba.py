"""CelebA (Liu et al. 2015): 202,599 aligned face images of 10,177 identities.

Source: the aligned images (``img_align_celeba/`` 178x218 JPEGs, or the PNG
version ``img_align_celeba_png/``) and ``identity_CelebA.txt`` ("000001.jpg 2935"
per line), each at the top of SRC or under Img/ and Anno/ as distributed.
Identity = the celebrity, pose = the image (CelebA has no pose labels: head pose
and expression vary freely). Crop: LORD's, the central 128x128 pixels, then
resized to --size. Split: 1,000 identities held out (LORD ICLR 2020 A.2, C-S 2021 B).
"""

from __future__ import annotations

from pathlib import Path

from ...errors import InputError
from ...media.images import read_image
from .common import Options, Plan, check_options, prepare, split_by_identity
from .writer import Item, Unit

ACCEPTS = {"test_ids", "test_count", "crop"}
CROP = 128  # LORD: the central 128x128 of the 178x218 aligned images
TEST_IDS = 1000
PAPER = "1,000 of the 10,177 identities held out at random (LORD ICLR 2020, C-S 2021)"
FOLDERS = ("img_align_celeba", "img_align_celeba_png", "Img/img_align_celeba", "Img/img_align_celeba_png")
CHUNK = 500


def _identity_file(src: Path) -> Path:
    for p in (src / "identity_CelebA.txt", src / "Anno" / "identity_CelebA.txt"):
        if p.is_file():
            return p
    raise InputError("missing identity_CelebA.txt (CelebA's identity annotations, in Anno/ of the download)",
                     src / "identity_CelebA.txt")


def _images_dir(src: Path) -> Path:
    for name in FOLDERS:
        if (src / name).is_dir():
            return src / name
    raise InputError("missing the aligned images folder img_align_celeba/ (from img_align_celeba.zip)",
                     src / "img_align_celeba")


def _read_identities(path: Path) -> list[tuple[str, str]]:
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read ({e})", path) from None
    for n, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].isdigit():
            raise InputError(f"line {n}: expected 'IMAGE IDENTITY' (e.g. 000001.jpg 2935), got {line.strip()[:60]!r}", path)
        out.append((parts[0], parts[1]))
    if not out:
        raise InputError("no lines (expected 'IMAGE IDENTITY' per line)", path)
    return out


def plan(src: Path, opts: Options) -> Plan:
    check_options("celeba", opts, ACCEPTS)
    if not src.is_dir():
        raise InputError("expected the CelebA folder (img_align_celeba/ and identity_CelebA.txt)", src)
    ids_file, images = _identity_file(src), _images_dir(src)
    rows = []
    for name, ident in _read_identities(ids_file):
        f = images / name
        if not f.is_file() and (images / (Path(name).stem + ".png")).is_file():
            f = images / (Path(name).stem + ".png")  # the PNG edition
        if not f.is_file():
            raise InputError(f"listed in {ids_file.name} but missing from the images folder", f)
        rows.append((f, f"celeb{int(ident):05d}", Path(name).stem))
    test, split = split_by_identity((r[1] for r in rows), opts, TEST_IDS, PAPER)
    crop = CROP if opts.crop is None else opts.crop

    def units():
        for start in range(0, len(rows), CHUNK):
            def items(start=start):
                for f, ident, stem in rows[start:start + CHUNK]:
                    yield Item("test" if ident in test else "train", ident, stem, {"celeb": ident, "image": f.name},
                               prepare(read_image(f), opts.size, crop))
            yield Unit(f"celeba:{start}", len(rows[start:start + CHUNK]), items)

    n_ids = len({r[1] for r in rows})
    notes = [] if len(rows) == 202599 else [f"the source lists {len(rows)} images of {n_ids} identities "
                                            "(the distributed set: 202599 of 10177)"]
    return Plan(units(), len(rows), "img", {"size": opts.size, "crop": crop}, split, notes)
