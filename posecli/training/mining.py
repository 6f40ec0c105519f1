"""Training triplets for Xiao et al. (paper section 3.2): identity and target from one
clip, the pose image from another clip, chosen by pose.

- I_id and I_target are two frames of one clip (for stills: two images of one
  identity folder);
- I_pose is a nearest neighbour of I_target in a pose-feature space, among the
  frames of *other* clips (cosine similarity);
- all frames are clustered into M poses (k-means on the same features) and the
  target's pose cluster is drawn uniformly among the clusters present in the clip,
  so that the (identity pose, target pose) pairs spread over the pose clusters
  instead of piling up where a clip lingers (the paper: "cluster all images into M
  poses and sample a balanced number of unique pose pairs"; how is not given).

Pose features (``pose_features``):

- ``rotnet`` (default): the paper used conv4 of an AlexNet trained by rotation
  prediction (RotNet, Gidaris et al. 2018) on ImageNet, which posecli cannot
  download. The stand-in is the same self-supervision on the training frames
  themselves: a small conv net learns to tell which of four rotations a frame was
  given, and its conv4 maps, instance-normalised (per-channel mean and variance over
  the map removed, the pose encoder's own argument for instance norm: they carry
  colour and identity) and average-pooled to 4x4, are the features;
- ``edges``: Sobel edge magnitudes of the grey frame, instance-normalised and pooled
  to 8x8 ("objects with the same pose share a large amount of edges", the paper's
  own argument), no training;
- a path to a posecli model file: its pose encoder (for instance a LORD model
  trained on labelled data of the same kind).

The result is cached in the work folder (keyed by the data and the recipe), so a
resumed or repeated run reuses it; under torchrun rank 0 computes it and the other
processes read the cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger("posecli")
RECIPE = "mining-v2"
REPORT_NEIGHBOURS = 5  # neighbours kept per frame for the report picture (at least ``neighbours``)


# -- pose features ---------------------------------------------------------------

def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class RotNet(nn.Module):
    """A small rotation predictor: frame (B, 3, S, S) in [0, 1] -> logits over 0/90/180/270 degrees.
    conv4 is the feature layer, as the paper's AlexNet conv4."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([_conv(3, 16), _conv(16, 32, 2), _conv(32, 64, 2), _conv(64, 64),
                                     _conv(64, 64, 2)])
        self.head = nn.Linear(64, 4)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        h = x * 2 - 1
        for block in self.blocks[:4]:
            h = block(h)
        return h  # conv4: (B, 64, S/4, S/4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks[4](self.features(x)).mean((2, 3)))


@torch.enable_grad()
def pretrain_rotnet(images: torch.Tensor, epochs: int, seed: int, batch_size: int = 64,
                    quiet: bool = False) -> RotNet:
    """RotNet on uint8 frames (N, 3, S, S): each batch shown at all four rotations, with
    random flips; Adam 1e-3. Returns the frozen network (eval mode)."""
    from ..media.convert import uint8_to_float
    from ..progress import progress

    device = images.device
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = RotNet().to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    n = len(images)
    steps = max(1, math.ceil(n / batch_size))
    bar = progress(total=epochs * steps, desc="pose features (rotation)", unit="step", quiet=quiet)
    rot_labels = torch.arange(4, device=device)
    for epoch in range(epochs):
        perm = torch.randperm(n, generator=g).to(device)
        total, correct, seen = 0.0, 0.0, 0
        for i in range(steps):
            x = uint8_to_float(images[perm[i * batch_size:(i + 1) * batch_size]])
            flip = torch.rand(len(x), generator=g).to(device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
            xs = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
            y = rot_labels.repeat_interleave(len(x))
            logits = net(xs)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(xs)
            correct += float((logits.argmax(1) == y).sum())
            seen += len(xs)
            bar.update(1)
        log.info(f"rotation pre-training epoch {epoch + 1}/{epochs}: loss {total / seen:.3f}, "
                 f"accuracy {correct / seen:.3f}")
    bar.close()
    return net.eval().requires_grad_(False)


def _instance_normalise(f: torch.Tensor) -> torch.Tensor:
    mean, std = f.mean((2, 3), keepdim=True), f.std((2, 3), keepdim=True)
    return (f - mean) / (std + 1e-5)


def _edges(x: torch.Tensor) -> torch.Tensor:
    grey = x.mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], device=x.device)
    k = torch.stack([kx, kx.t()])[:, None]  # (2, 1, 3, 3)
    g = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), k)
    return g.pow(2).sum(1, keepdim=True).sqrt()


@torch.no_grad()
def pose_features(images: torch.Tensor, kind: str, net=None, batch_size: int = 256) -> torch.Tensor:
    """(N, D) L2-normalised pose features of uint8 frames (N, 3, S, S).

    kind: ``rotnet`` (``net`` a RotNet), ``edges``, or ``model`` (``net`` a PoseModel)."""
    from ..media.convert import uint8_to_float

    out = []
    for i in range(0, len(images), batch_size):
        x = uint8_to_float(images[i:i + batch_size])
        if kind == "rotnet":
            f = F.adaptive_avg_pool2d(_instance_normalise(net.features(x)), 4)
        elif kind == "edges":
            f = F.adaptive_avg_pool2d(_instance_normalise(_edges(x)), 8)
        elif kind == "model":
            if x.shape[-1] != net.image_size:
                x = F.interpolate(x, size=(net.image_size, net.image_size), mode="bilinear", antialias=True,
                                  align_corners=False)
            f = net.encode_pose(x)
        else:
            raise ValueError(f"unknown pose feature kind {kind!r}")
        out.append(F.normalize(f.float().flatten(1), dim=1))
    return torch.cat(out)


# -- neighbours and clusters -----------------------------------------------------

@torch.no_grad()
def nearest_other_group(feats: torch.Tensor, groups: torch.Tensor, k: int, chunk: int = 512) -> torch.Tensor:
    """(N, k) indices of each row's k most cosine-similar rows of *other* groups, best first."""
    out = []
    for i in range(0, len(feats), chunk):
        sim = feats[i:i + chunk] @ feats.t()  # (c, N)
        sim.masked_fill_(groups[i:i + chunk, None] == groups[None], -math.inf)
        out.append(sim.topk(k, dim=1).indices)
    return torch.cat(out)


@torch.no_grad()
def kmeans(feats: torch.Tensor, m: int, seed: int, iters: int = 30) -> torch.Tensor:
    """Spherical k-means of L2-normalised rows into m clusters (k-means++ seeding); (N,) labels."""
    n = len(feats)
    m = min(m, n)
    g = torch.Generator().manual_seed(seed)
    centres = [feats[int(torch.randint(n, (1,), generator=g))]]
    dist = 1 - feats @ centres[0]
    for _ in range(1, m):  # k-means++: far points are likelier centres
        p = dist.clamp_min(0).cpu().double() + 1e-12
        centres.append(feats[int(torch.multinomial(p / p.sum(), 1, generator=g))])
        dist = torch.minimum(dist, 1 - feats @ centres[-1])
    c = torch.stack(centres)
    assign = torch.zeros(n, dtype=torch.int64, device=feats.device)
    for _ in range(iters):
        sim = feats @ c.t()
        new = sim.argmax(1)
        counts = torch.bincount(new, minlength=m)
        for j in torch.nonzero(counts == 0).flatten().tolist():  # an empty cluster takes the worst-fit point
            worst = int(sim.max(1).values.argmin())
            new[worst] = j
            sim[worst] = math.inf
        sums = torch.zeros_like(c).index_add_(0, new, feats)
        c = F.normalize(sums, dim=1)
        if torch.equal(new, assign):
            break
        assign = new
    return assign


@dataclass
class Mining:
    """Neighbours and pose clusters of every frame, and the tables that draw triplets from them."""

    neighbours: torch.Tensor  # (N, K') other-clip neighbours by pose, best first
    clusters: torch.Tensor  # (N,) pose cluster
    groups: torch.Tensor  # (N,) clip, 0..G-1
    k: int  # I_pose is drawn from the first k neighbours

    def __post_init__(self):
        m = int(self.clusters.max()) + 1
        key = self.groups * m + self.clusters  # (clip, pose cluster) cells
        order = torch.argsort(key, stable=True)
        cells, cell_of, cell_count = torch.unique(key, return_inverse=True, return_counts=True)
        self.order = order
        self.cell_start = torch.cumsum(cell_count, 0) - cell_count
        self.cell_count = cell_count
        cell_group = cells // m
        n_groups = int(self.groups.max()) + 1
        self.group_cells = torch.bincount(cell_group, minlength=n_groups)  # cells per clip
        self.group_first = torch.cumsum(self.group_cells, 0) - self.group_cells  # cells sorted by clip

    @property
    def n_clusters(self) -> int:
        return int(self.clusters.max()) + 1

    def draw(self, idx: torch.Tensor, gen: torch.Generator, partner: torch.Tensor) -> dict:
        """Targets and pose images for identity images ``idx``. ``partner``: another frame of each
        one's clip, used when the drawn target is the identity image itself."""
        u = torch.rand((len(idx), 3), generator=gen, device=gen.device).to(idx.device)
        g = self.groups[idx]
        n_cells = self.group_cells[g]
        cell = self.group_first[g] + (u[:, 0] * n_cells).long().clamp_max(n_cells - 1)
        count = self.cell_count[cell]
        target = self.order[self.cell_start[cell] + (u[:, 1] * count).long().clamp_max(count - 1)]
        target = torch.where(target == idx, partner, target)
        pose = self.neighbours[target, (u[:, 2] * self.k).long().clamp_max(self.k - 1)]
        return {"partner_idx": target, "other_idx": pose}

    def state(self) -> dict[str, torch.Tensor]:
        return {"neighbours": self.neighbours.cpu(), "clusters": self.clusters.cpu()}


def cache_key(data_key: str, features: str, clusters: int, seed: int, rotnet_epochs: int) -> str:
    extra = ""
    if features not in ("rotnet", "edges"):  # a model file: its identity is its bytes' size and time
        p = Path(features)
        st = p.stat()
        extra = f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    spec = f"{RECIPE}:{data_key}:{features}:{extra}:{clusters}:{seed}:{rotnet_epochs if features == 'rotnet' else 0}"
    return hashlib.sha1(spec.encode()).hexdigest()[:12]


def mine(data, features: str, clusters: int, k: int, seed: int, rotnet_epochs: int,
         cache_dir: Path | None, quiet: bool = False) -> Mining:
    """The triplet tables for ``data`` (TrainData): from the cache, else computed and cached.
    Under torchrun call it inside ``distributed.main_first``."""
    from safetensors.torch import load_file, save_file

    from ..fileio import atomic_path

    from .method import clip_groups

    groups = clip_groups(data)
    path = None
    if cache_dir is not None:
        path = cache_dir / f"mining-{cache_key(data.key, features, clusters, seed, rotnet_epochs)}.safetensors"
    if path is not None and path.is_file():
        z = load_file(str(path), device=str(data.images.device))
        log.info(f"training triplets from {path}")
        return Mining(z["neighbours"], z["clusters"], groups, min(k, z["neighbours"].shape[1]))
    if features == "rotnet":
        log.warning(f"learning pose features by rotation prediction on the training frames ({rotnet_epochs} "
                    "epochs; cached in the work folder)")
        kind, net = "rotnet", pretrain_rotnet(data.images, rotnet_epochs, seed, quiet=quiet)
    elif features == "edges":
        kind, net = "edges", None
    else:
        from ..modelfile import load_model

        kind, net = "model", load_model(features, device=data.images.device).eval()
    feats = pose_features(data.images, kind, net)
    others = len(feats) - int(torch.bincount(groups).max())  # other-clip frames of the largest clip's frames
    neighbours = nearest_other_group(feats, groups, min(max(k, REPORT_NEIGHBOURS), others))
    assign = kmeans(feats, clusters, seed)
    mining = Mining(neighbours, assign, groups, min(k, others))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, overwrite=True) as tmp:
            save_file({k_: v.contiguous() for k_, v in mining.state().items()}, str(tmp))
    return mining


def report(mining: Mining, data, workdir: Path, features: str, seed: int, rows: int = 8) -> dict:
    """mining.json (cluster sizes, neighbours per frame) and mining.png (query targets and
    their nearest other-clip frames) in the work folder; returns the JSON."""
    from ..fileio import write_bytes_atomic
    from ..media.images import write_image

    sizes = torch.bincount(mining.clusters, minlength=mining.n_clusters).tolist()
    info = {"features": features, "clusters": len(sizes), "cluster_sizes": sizes, "neighbours": mining.k,
            "frames": len(mining.clusters), "clips": int(mining.groups.max()) + 1,
            "neighbours_from_other_clips": float((mining.groups[mining.neighbours[:, 0]] != mining.groups).float().mean())}
    g = torch.Generator().manual_seed(seed)
    queries = torch.randperm(len(mining.clusters), generator=g)[:rows].to(mining.neighbours.device)
    cols = mining.neighbours.shape[1]
    picks = torch.cat([queries[:, None], mining.neighbours[queries]], dim=1).flatten()  # (rows * (1 + cols),)
    imgs = data.images[picks].cpu()  # (R*(1+C), 3, S, S) uint8
    s = imgs.shape[-1]
    pad = 2
    canvas = torch.full((3, rows * (s + pad) + pad, (1 + cols) * (s + pad) + pad + 2 * pad), 255, dtype=torch.uint8)
    for i, img in enumerate(imgs):
        r, c = divmod(i, 1 + cols)
        x = pad + c * (s + pad) + (2 * pad if c else 0)  # a gap after the query column
        canvas[:, pad + r * (s + pad):pad + r * (s + pad) + s, x:x + s] = img
    write_image(workdir / "mining.png", canvas.permute(1, 2, 0).numpy(), overwrite=True)
    write_bytes_atomic(workdir / "mining.json", json.dumps(info, indent=1).encode(), overwrite=True)
    return info
