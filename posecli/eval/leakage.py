"""Leakage between the codes (Harsh Jha et al. 2018, as used by LORD).

A small classifier learns to predict identity from POSE codes and pose from
IDENTITY codes. Test accuracy near chance means the code holds no information
about the other factor; near 1 means it leaks. Chance here is the majority-class
frequency in the test split (what always answering the commonest class scores;
1/K for balanced data).
"""

from __future__ import annotations

import numpy as np

HIDDEN = 256
EPOCHS = 40
BATCH = 128
LR = 1e-3
TEST_FRACTION = 0.2
CHANCE_KIND = "majority-class frequency in the test split"


def stratified_split(labels: np.ndarray, test_fraction: float = TEST_FRACTION, seed: int = 0):
    """(train, test) index arrays: about ``test_fraction`` of each class in test.

    A class with a single sample goes to train only (it cannot be tested).
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = 0 if len(idx) < 2 else min(len(idx) - 1, max(1, int(round(test_fraction * len(idx)))))
        test.extend(idx[:k].tolist())
        train.extend(idx[k:].tolist())
    return np.sort(np.array(train, np.int64)), np.sort(np.array(test, np.int64))


def probe_accuracy(codes, labels: np.ndarray, seed: int = 0, epochs: int = EPOCHS, hidden: int = HIDDEN) -> dict:
    """Test accuracy of an MLP (one hidden layer) predicting ``labels`` from ``codes``.

    Codes are standardised with the train split's statistics. CPU, seeded,
    and the global torch RNG is left untouched.
    """
    import torch

    _, y_np = np.unique(np.asarray(labels), return_inverse=True)
    k = int(y_np.max()) + 1
    train, test = stratified_split(y_np, seed=seed)
    result = {"classes": k, "train": len(train), "test": len(test), "accuracy": None, "chance": None}
    if len(test) == 0 or k < 2:
        return result
    result["chance"] = float(np.bincount(y_np[test], minlength=k).max() / len(test))
    x = np.asarray(codes, dtype=np.float32).reshape(len(y_np), -1)
    # One thread: the layers are too small to gain from more, and on a busy machine
    # thread contention made training ~40x slower. Gradients even under inference_mode.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng(devices=[]):
            pred = _fit_predict(torch.from_numpy(x), torch.from_numpy(y_np.astype(np.int64)), train, test, k,
                                seed, epochs, hidden)
    finally:
        torch.set_num_threads(threads)
    result["accuracy"] = float((pred == y_np[test]).mean())
    return result


def _fit_predict(x, y, train, test, k: int, seed: int, epochs: int, hidden: int) -> np.ndarray:
    import torch
    from torch import nn

    train, test = torch.from_numpy(train), torch.from_numpy(test)
    mean = x[train].mean(0)
    std = x[train].std(0, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))  # constant features stay 0
    x = (x - mean) / std
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, k))
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = x[train], y[train]
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=gen)
        for s in range(0, len(train), BATCH):
            b = order[s : s + BATCH]
            loss = nn.functional.cross_entropy(net(xt[b]), yt[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    with torch.no_grad():
        return net(x[test]).argmax(1).numpy()


def leakage(identity_codes, pose_codes, identity_labels: np.ndarray, pose_labels: np.ndarray,
            seed: int = 0, epochs: int = EPOCHS) -> dict:
    """Both directions: identity from pose codes, pose from identity codes."""
    return {
        "identity_from_pose": probe_accuracy(pose_codes, identity_labels, seed=seed, epochs=epochs),
        "pose_from_identity": probe_accuracy(identity_codes, pose_labels, seed=seed, epochs=epochs),
        "chance_kind": CHANCE_KIND,
        "classifier": f"MLP {HIDDEN} hidden (ReLU), Adam lr {LR}, {epochs} epochs, batch {BATCH}, "
                      f"standardised codes, stratified {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} split",
    }
