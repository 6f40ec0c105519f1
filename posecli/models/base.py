"""The interface every method's inference model implements."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn


class PoseModel(nn.Module):
    """identity/pose encoders and a generator; configs are frozen dataclasses."""

    method: str = ""
    Config: type = object
    optional_state: tuple[str, ...] = ()  # state keys older model files may lack (defaults kept)

    def __init__(self, config):
        super().__init__()
        self.config = config

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def identity_dim(self) -> int:
        return self.config.identity_dim

    @property
    def pose_dim(self) -> int:
        return self.config.pose_dim

    def config_dict(self) -> dict:
        return dataclasses.asdict(self.config)

    @classmethod
    def from_config_dict(cls, d: dict) -> "PoseModel":
        fields = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = set(d) - fields
        if unknown:
            raise ValueError(f"unknown config keys for {cls.method}: {sorted(unknown)}")
        return cls(cls.Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}))

    def encode_identity(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def encode_pose(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def generate(self, identity: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def swap(self, id_images: torch.Tensor, pose_images: torch.Tensor) -> torch.Tensor:
        """The identity of id_images in the pose of pose_images (pairwise)."""
        return self.generate(self.encode_identity(id_images), self.encode_pose(pose_images))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        return self.generate(self.encode_identity(x), self.encode_pose(x))
