"""Leakage between the codes (Harsh Jha et al. 2018, as used by LORD).

A small classifier learns to predict identity from POSE codes and pose from
IDENTITY codes. Cross-validated accuracy near chance means the code holds no
information about the other factor; near 1 means it leaks. Chance here is the
majority-class frequency among the tested codes (what always answering the
commonest class scores; 1/K for balanced data).
"""

from __future__ import annotations

import numpy as np

HIDDEN = 256
EPOCHS = 40
BATCH = 128
LR = 1e-3
FOLDS = 5
CHANCE_KIND = "majority-class frequency among the tested codes"


def stratified_folds(labels: np.ndarray, folds: int = FOLDS, seed: int = 0) -> np.ndarray:
    """A fold number per sample (0..folds-1), each class dealt evenly across folds;
    -1 for samples never tested (a class with a single sample: it cannot be
    predicted from the others, so it only ever trains).
    """
    rng = np.random.default_rng(seed)
    fold = np.full(len(labels), -1, np.int64)
    offset = 0  # rotate where each class starts, so small classes do not all land in fold 0
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        if len(idx) < 2:
            continue
        rng.shuffle(idx)
        fold[idx] = (offset + np.arange(len(idx))) % folds
        offset += len(idx)
    return fold


def probe_accuracy(codes, labels: np.ndarray, seed: int = 0, epochs: int = EPOCHS, hidden: int = HIDDEN,
                   folds: int = FOLDS) -> dict:
    """Cross-validated accuracy of an MLP (one hidden layer) predicting ``labels`` from ``codes``.

    Stratified ``folds``-fold: every code is predicted once by a classifier that
    never saw it, so the figure rests on all codes rather than one small test
    split. Codes are standardised with each training split's statistics. CPU,
    seeded, and the global torch RNG is left untouched.
    """
    import torch

    _, y_np = np.unique(np.asarray(labels), return_inverse=True)
    k = int(y_np.max()) + 1 if len(y_np) else 0
    fold = stratified_folds(y_np, folds, seed) if len(y_np) else np.zeros(0, np.int64)
    tested = fold >= 0
    result = {"classes": k, "folds": folds, "test": int(tested.sum()), "accuracy": None, "chance": None}
    if not tested.any() or k < 2:
        return result
    result["chance"] = float(np.bincount(y_np[tested], minlength=k).max() / tested.sum())
    x = torch.from_numpy(np.asarray(codes, dtype=np.float32).reshape(len(y_np), -1))
    y = torch.from_numpy(y_np.astype(np.int64))
    correct = 0
    # One thread: the layers are too small to gain from more, and on a busy machine
    # thread contention made training ~40x slower. Gradients even under inference_mode.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode(False), torch.enable_grad(), torch.random.fork_rng(devices=[]):
            for f in range(folds):
                test = np.flatnonzero(fold == f)
                if len(test) == 0:
                    continue
                train = np.flatnonzero(fold != f)
                pred = _fit_predict(x, y, train, test, k, seed + f, epochs, hidden)
                correct += int((pred == y_np[test]).sum())
    finally:
        torch.set_num_threads(threads)
    result["accuracy"] = correct / int(tested.sum())
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
                      f"standardised codes, stratified {FOLDS}-fold cross-validation",
    }
