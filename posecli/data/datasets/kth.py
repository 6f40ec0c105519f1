"""KTH actions (Schuldt, Laptev & Caputo 2004): 25 people x 6 actions x 4 scenarios,
599 grey 160x120 videos at 25 fps.

Source: the unzipped videos ``personNN_ACTION_dK_uncomp.avi`` (any folder layout
under SRC: walking.zip, jogging.zip, ... each unzip to a folder of them) and,
when present, ``00sequences.txt`` (the frame ranges of each video's sub-sequences).

Variants:
  frames  LORD: frames as images; identity = the person, pose = the frame
          (``ACTION_dK_fNNNN``: KTH has no pose labels). Split: 10% of the images
          held out at random (LORD ICLR 2020 A.2; all 25 people are in training).
  clips   Xiao et al. / Esser et al.: each sub-sequence of 00sequences.txt (else the
          whole video) as an .mp4 clip ``OUT/<split>/personNN_ACTION_dK_sM.mp4``:
          ``posecli train OUT/train`` takes each clip as an identity. Split: no paper
          gives one for these methods on KTH; KTH's own test people
          (2, 3, 5, 6, 7, 8, 9, 10, 22) are held out.
Frames are centre-cropped to a square (120x120), turned grey, and resized.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...errors import InputError, UsageError
from .common import Options, Plan, check_options, choose_variant, image_split, in_test, prepare, split_by_identity
from .writer import Item, Unit

ACCEPTS = {"variant", "test_ids", "test_count", "test_fraction", "crop", "fps", "actions", "scenarios"}
VARIANTS = {"frames": "person / frame (LORD)", "clips": "clips as identities (Xiao, Esser)"}
ACTIONS = ("boxing", "handclapping", "handwaving", "jogging", "running", "walking")
SCENARIOS = ("d1", "d2", "d3", "d4")
KTH_TEST_PEOPLE = ("person02", "person03", "person05", "person06", "person07", "person08", "person09", "person10",
                   "person22")
NAME = re.compile(r"(person\d\d)_([a-z]+)_(d\d)(?:_uncomp)?\.avi$")
SEQ_LINE = re.compile(r"^\s*(person\d\d_[a-z]+_d\d)\s+frames\s+(.+)$")


def _videos(src: Path) -> list[tuple[Path, str, str, str]]:
    if not src.is_dir():
        raise InputError("expected the folder of KTH videos (personNN_ACTION_dK_uncomp.avi)", src)
    out = []
    for f in sorted(src.rglob("*.avi")):
        m = NAME.match(f.name)
        if not m:
            raise InputError("not a KTH video name (personNN_ACTION_dK_uncomp.avi)", f)
        person, action, scenario = m.groups()
        if action not in ACTIONS:
            raise InputError(f"unknown KTH action {action!r} (expected {', '.join(ACTIONS)})", f)
        out.append((f, person, action, scenario))
    if not out:
        zips = sorted(src.glob("*.zip"))
        hint = f"; unzip {zips[0].name} (and the other action zips) first" if zips else ""
        raise InputError(f"no KTH videos (personNN_ACTION_dK_uncomp.avi){hint}", src)
    return out


def read_sequences(path: Path) -> dict[str, list[tuple[int, int]]]:
    """00sequences.txt: {"person01_boxing_d1": [(1, 95), (96, 185), ...]} (1-based, inclusive)."""
    seqs = {}
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        m = SEQ_LINE.match(line)
        if not m:
            continue  # the header and blank lines
        ranges = [(int(a), int(b)) for a, b in re.findall(r"(\d+)\s*-\s*(\d+)", m.group(2))]
        if not ranges or any(a < 1 or b < a for a, b in ranges):
            raise InputError(f"line {n}: bad frame ranges {m.group(2).strip()!r}", path)
        seqs[m.group(1)] = ranges
    return seqs


def _pick(values: tuple[str, ...] | None, allowed: tuple[str, ...], flag: str) -> set[str]:
    if not values:
        return set(allowed)
    bad = [v for v in values if v not in allowed]
    if bad:
        raise UsageError(f"{flag} {bad[0]}: expected some of {', '.join(allowed)}")
    return set(values)


def _frames(path: Path, fps: float | None, size: int, crop: int | None) -> list[np.ndarray]:
    import cv2

    from ...media.video import VideoReader

    with VideoReader(path, fps=fps) as reader:
        return [prepare(cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY), size, crop) for f in reader]


def plan(src: Path, opts: Options) -> Plan:
    check_options("kth", opts, ACCEPTS)
    variant = choose_variant("kth", opts, VARIANTS)
    if opts.fps is not None and opts.fps <= 0:
        raise UsageError(f"--fps {opts.fps}: must be positive")
    actions = _pick(opts.actions, ACTIONS, "--actions")
    scenarios = _pick(opts.scenarios, SCENARIOS, "--scenarios")
    videos = [v for v in _videos(src) if v[2] in actions and v[3] in scenarios]
    if not videos:
        raise InputError(f"no KTH videos of {', '.join(sorted(actions))} in {', '.join(sorted(scenarios))}", src)
    seq_file = next(iter(sorted(src.rglob("00sequences.txt"))), None)
    people = sorted({v[1] for v in videos})
    frac, test = None, set()
    if variant == "frames":
        if opts.test_ids is not None or opts.test_count is not None:
            raise UsageError("--variant frames holds out images (--test-fraction) as LORD does; "
                             "--variant clips holds out people")
        frac, split = image_split(opts, 0.1, "10% of the images held out at random (LORD; all people train)")
    else:
        if opts.test_fraction is not None:
            raise UsageError("--variant clips holds out people (--test-ids, --test-count), not images")
        if opts.test_ids is None and opts.test_count is None:
            test = set(KTH_TEST_PEOPLE) & set(people)
            if len(test) == len(people):
                raise UsageError("every person in the source is one of KTH's test people; pass --test-ids or --test-count")
            split = {"by": "identity", "rule": "no paper gives one: KTH's own test people held out "
                     "(2, 3, 5, 6, 7, 8, 9, 10, 22)", "test_identities": sorted(test)}
        else:
            test, split = split_by_identity(people, opts, 0, "")
    seqs = read_sequences(seq_file) if (variant == "clips" and seq_file) else {}
    fps = opts.fps

    def frame_items(path, person, action, scenario):
        frames = _frames(path, fps, opts.size, opts.crop)
        if not frames:
            raise InputError("decodes to no frames", path)
        for i, pixels in enumerate(frames):
            pose = f"{action}_{scenario}_f{i:04d}"
            yield Item("test" if in_test(f"{person}/{pose}", opts.seed, frac) else "train", person, pose,
                       {"person": person, "action": action, "scenario": scenario, "frame": i,
                        "video": path.name}, pixels)

    def clip_items(path, person, action, scenario):
        frames = _frames(path, fps, opts.size, opts.crop)
        if not frames:
            raise InputError("decodes to no frames", path)
        ranges = seqs.get(f"{person}_{action}_{scenario}") or [(1, len(frames))]
        for k, (a, b) in enumerate(ranges, 1):
            clip = frames[a - 1:b]
            if not clip:
                raise InputError(f"00sequences.txt gives frames {a}-{b} but the video has {len(frames)}", path)
            name = f"{person}_{action}_{scenario}_s{k}"
            yield Item("test" if person in test else "train", person, f"{action}_{scenario}_s{k}",
                       {"person": person, "action": action, "scenario": scenario, "sequence": k,
                        "first_frame": a, "last_frame": min(b, len(frames)), "video": path.name},
                       frames=lambda clip=clip: (np.repeat(f[:, :, None], 3, axis=2) for f in clip),
                       fps=fps or 25.0, name=name)

    make = frame_items if variant == "frames" else clip_items

    def units():
        for v in videos:
            yield Unit(f"kth:{variant}:{v[0].name}", 1, lambda v=v: make(*v))

    notes = [] if len(videos) == 599 or opts.actions or opts.scenarios else [
        f"the source has {len(videos)} videos (the distributed set has 599)"]
    return Plan(units(), len(videos), "video",
                {"size": opts.size, "variant": variant, "fps": fps, "crop": opts.crop,
                 "actions": sorted(actions), "scenarios": sorted(scenarios)}, split, notes)
