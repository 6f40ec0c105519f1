"""Animate one image with a driving video: the image's identity in each frame's pose.

Per frame: the object's region (the whole frame, a fixed box or a tracked
face) is cut out at the model's size, its pose encoded (and filtered over
time), the identity of ``--id`` generated in that pose and the result put
back into the frame. Four threads joined by bounded queues overlap the work:

    decode + crop  ->  model (batches)  ->  compose (paste)  ->  encode (main thread)

so memory does not depend on the video's length and no list of frames is
ever built. The output keeps the source's rate, length and sound and appears
only when complete (Ctrl-C or an error leaves nothing at ``out``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import UsageError
from ..media.convert import resize_pixels, to_pixels, to_tensor
from ..regions import Box, crop_resize, feather_mask, paste
from ..runtime import cpu_has_native_bf16, inference_autocast, inference_dtype  # noqa: F401 (re-exported)
from .encode import model_device, prepare_pixels
from .smoothing import DEFAULT_SMOOTH, JitterMeter, make_pose_filter
from .sources import check_output, open_sink, open_source
from .streaming import Stage
from .tracking import DEFAULT_MARGIN, FaceTracker

REGIONS = ("full", "face")  # or a Box
DEFAULT_FEATHER = 0.15
QUEUE_BATCHES = 2  # batches waiting between two stages


@dataclass
class AnimateResult:
    output: str
    frames: int
    fps: float
    size: tuple[int, int]  # (w, h) of the written frames
    region: str
    seconds: float
    frames_per_s: float
    stage_s: dict = field(default_factory=dict)  # busy seconds per stage (decode, track, model, compose, encode)
    jitter: float | None = None  # output change / driving change, frame to frame, at model size
    flicker: float | None = None  # the same for the temporal second difference (shake, not motion)


def default_batch_size(device: torch.device) -> int:
    return 64 if device.type == "cuda" else 16


def _region_name(region) -> str:
    return "box " + ",".join(map(str, region.as_list())) if isinstance(region, Box) else region


class _Plan:
    """What each stage does to a frame, fixed once from the options."""

    def __init__(self, size: int, width: int, height: int, region, crop_only: bool, side_by_side: bool,
                 feather: float):
        self.S, self.W, self.H = size, width, height
        self.region, self.crop_only, self.side_by_side, self.feather = region, crop_only, side_by_side, feather
        # Only the model-size crop is needed when the whole frame is the object and no
        # full frame is shown: ffmpeg scales while decoding (far cheaper than piping 720p).
        self.small_decode = region == "full" and (crop_only or not side_by_side)
        self._masks: dict[tuple[int, int], np.ndarray] = {}

    @property
    def decode_size(self) -> tuple[int, int] | None:
        return (self.S, self.S) if self.small_decode else None

    @property
    def out_size(self) -> tuple[int, int]:
        w, h = (self.S, self.S) if self.crop_only else (self.W, self.H)
        return (2 * w, h) if self.side_by_side else (w, h)

    def crop(self, frame: np.ndarray, box: Box | None) -> np.ndarray:
        if self.small_decode:
            return frame
        if box is None:  # the full frame, squashed to a square; compose() un-squashes
            return resize_pixels(frame, self.S)
        return crop_resize(frame, box, self.S)

    def mask(self, box: Box) -> np.ndarray:
        key = (box.w, box.h)
        if key not in self._masks:
            if len(self._masks) > 64:
                self._masks.clear()
            self._masks[key] = feather_mask(box.h, box.w, self.feather)
        return self._masks[key]

    def compose(self, frame: np.ndarray | None, crop: np.ndarray, gen: np.ndarray, box: Box | None) -> np.ndarray:
        if self.crop_only:
            out, driving = gen, crop
        elif box is None:
            out, driving = resize_pixels(gen, (self.W, self.H)), frame
        else:
            out, driving = paste(frame, gen, box, self.mask(box)), frame
        return np.concatenate([driving, out], axis=1) if self.side_by_side else out


def _resolve_region(region, width: int, height: int, video_name: str):
    if isinstance(region, str) and region not in REGIONS:
        region = Box.parse(region, "--box")
    if isinstance(region, Box):
        region = region.clip_to(width, height, what=f"{video_name}: --box")
    return region


class _Pipeline:
    """The four stages for one run; each stage's busy seconds land in ``stage_s``."""

    def __init__(self, model, identity: torch.Tensor, source, plan: _Plan, dtype, pose_filter, tracker,
                 batch_size: int, jitter: JitterMeter | None):
        self.model, self.identity, self.source, self.plan = model, identity, source, plan
        self.dtype, self.pose_filter, self.tracker = dtype, pose_filter, tracker
        self.batch_size, self.jitter = batch_size, jitter
        self.device = model_device(model)
        self.stage_s = {"decode": 0.0, "track": 0.0, "model": 0.0, "compose": 0.0, "encode": 0.0}

    def _box(self, t: int) -> Box | None:
        if self.tracker is not None:
            return self.tracker.box(t)
        return self.plan.region if isinstance(self.plan.region, Box) else None

    def decode(self):
        """Batches of (full frame or None, model-size crop, box or None)."""
        batch, t = [], 0
        with self.source.open(self.plan.decode_size) as frames:
            it = iter(frames)
            while True:
                t0 = time.perf_counter()
                frame = next(it, None)
                t1 = time.perf_counter()
                if frame is None:
                    break
                box = self._box(t)  # may wait for the face detector: not counted as decoding
                t2 = time.perf_counter()
                batch.append((None if self.plan.small_decode else frame, self.plan.crop(frame, box), box))
                self.stage_s["decode"] += (t1 - t0) + (time.perf_counter() - t2)
                t += 1
                if len(batch) == self.batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch

    def compute(self):
        """(batch, generated uint8 (N, S, S, 3)) per batch."""
        with Stage(self.decode, QUEUE_BATCHES, "decode") as batches:
            for batch in batches:
                t0 = time.perf_counter()
                with torch.inference_mode(), inference_autocast(self.device, self.dtype):
                    x = to_tensor(np.stack([c for _, c, _ in batch]), self.device)
                    pose = self.model.encode_pose(x)
                    if self.pose_filter is not None:  # sequential over frames: on the host
                        pose = torch.from_numpy(self.pose_filter(pose.float().cpu().numpy())).to(self.device, torch.float32)
                    gens = to_pixels(self.model.generate(self.identity.expand(len(x), -1), pose))
                self.stage_s["model"] += time.perf_counter() - t0
                yield batch, gens

    def compose(self):
        """Lists of output frames, one list per batch."""
        with Stage(self.compute, QUEUE_BATCHES, "model") as results:
            for batch, gens in results:
                t0 = time.perf_counter()
                if self.jitter is not None:
                    self.jitter.update([c for _, c, _ in batch], gens)
                outs = [self.plan.compose(f, c, g, b) for (f, c, b), g in zip(batch, gens)]
                self.stage_s["compose"] += time.perf_counter() - t0
                yield outs

    def run(self, sink, bar) -> int:
        """Encode in this (the main) thread, so Ctrl-C lands here; returns the frames written."""
        written = 0
        outputs = Stage(self.compose, QUEUE_BATCHES, "compose")
        try:
            for outs in outputs:
                t0 = time.perf_counter()
                for frame in outs:
                    sink.write(frame)
                self.stage_s["encode"] += time.perf_counter() - t0
                written += len(outs)
                bar.update(len(outs))
        except BaseException:
            if self.tracker is not None:
                self.tracker.close()  # first: the decode thread may be waiting for a box
            raise
        finally:
            outputs.close()
        return written


def animate(model, id_pixels: np.ndarray, video, out: str | Path, *, region="full", smooth: float = DEFAULT_SMOOTH,
            smooth_filter: str = "euro", crop_only: bool = False, side_by_side: bool = False,
            fps: float | None = None, id_crop: str = "auto", margin: float = DEFAULT_MARGIN,
            feather: float = DEFAULT_FEATHER, batch_size: int | None = None, precision: str = "auto",
            audio: bool = True, overwrite: bool = False, preset: str = "veryfast", quiet: bool = True,
            measure_jitter: bool = True) -> AnimateResult:
    """Write ``out``: the identity of ``id_pixels`` driven by ``video`` (path, folder, glob or frames).

    region: "full" (the frame is the object), "face" (tracked) or a Box / "x,y,w,h".
    smooth: one-euro (or "ema") pose filter strength in seconds, 0 = off.
    """
    from ..progress import progress

    t_start = time.perf_counter()
    device = model_device(model)
    batch_size = batch_size or default_batch_size(device)
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: expected at least 1")
    if not 0 <= feather <= 0.5:
        raise UsageError(f"--feather {feather}: expected a fraction of the box between 0 and 0.5")
    check_output(out, overwrite)
    source = open_source(video, fps)
    info = source.info
    region = _resolve_region(region, info.width, info.height, info.name)
    pose_filter = make_pose_filter(smooth, info.fps, smooth_filter)
    dtype = inference_dtype(device, precision)
    plan = _Plan(model.image_size, info.width, info.height, region, crop_only, side_by_side, feather)
    crop_mode = ("face" if region == "face" else "center") if id_crop == "auto" else id_crop
    id_crop_px = prepare_pixels(model, id_pixels, crop_mode, name="--id")
    with torch.inference_mode(), inference_autocast(device, dtype):
        identity = model.encode_identity(to_tensor(id_crop_px, device))

    tracker = None
    if region == "face":
        tracker = FaceTracker(source.open, (info.width, info.height), info.fps, info.name, margin=margin).start()
    pipe = _Pipeline(model, identity, source, plan, dtype, pose_filter, tracker, batch_size,
                     JitterMeter() if measure_jitter else None)
    try:
        with open_sink(out, info.fps, info.audio_path if audio else None, overwrite, preset) as sink, \
                progress(total=info.frames, desc="animate", unit="frame", quiet=quiet) as bar:
            written = pipe.run(sink, bar)
    finally:
        if tracker is not None:
            tracker.close()
            pipe.stage_s["track"] = tracker.busy_s
    seconds = time.perf_counter() - t_start
    return AnimateResult(str(out), written, info.fps, plan.out_size, _region_name(region), seconds,
                         written / seconds if seconds > 0 else 0.0, {k: round(v, 3) for k, v in pipe.stage_s.items()},
                         pipe.jitter.value if pipe.jitter is not None else None,
                         pipe.jitter.flicker if pipe.jitter is not None else None)
