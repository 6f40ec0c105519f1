"""The bundled models: readable, carded, and they really transfer pose.

On freshly rendered identities the model never saw, swap(identity A, pose of B)
must be closer to the ground truth (A rendered in B's pose) than A's own image
is: the model moves A into the new pose rather than copying its input.
"""

from __future__ import annotations

import numpy as np
import pytest

from posecli.modelfile import bundled_dir, load_model, read_metadata

CASES = {
    # name: (render(params, pose, size), params(seed, index), two poses)
    "cars": ("posecli.data.synth.cars", "render_car", "car_params", [(30.0, 0.0), (210.0, 20.0)]),
    "heads": ("posecli.data.synth.heads", "render_head", "head_params", [(-45.0, -10.0, 0.0), (40.0, 10.0, 1.0)]),
}

MOUTH_COSINE = 0.35  # the bundled heads measure 0.49; the earlier models, which drew no mouth, 0.08


def _bundled(name):
    path = bundled_dir() / f"{name}.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} is not bundled")
    return path


@pytest.mark.parametrize("name", sorted(CASES))
def test_bundled_model_has_a_card(name):
    meta = read_metadata(_bundled(name))
    assert meta["method"] == "lord" and meta["image_size"] == 64
    training = meta["training"]
    assert training["loss"] in ("vgg", "lap", "l1") and training["images"] > 0
    assert "transfer" in training["eval"] and "leakage" in training["eval"]
    assert (bundled_dir() / "README.md").read_text().count(f"## {name}") == 1


@pytest.mark.parametrize("name", sorted(CASES))
def test_bundled_model_transfers_pose_to_unseen_identities(name):
    import importlib

    import torch

    from posecli.media.convert import to_tensor

    module, render_name, params_name, (p1, p2) = CASES[name]
    mod = importlib.import_module(module)
    render, params = getattr(mod, render_name), getattr(mod, params_name)
    model = load_model(_bundled(name))
    s = model.image_size
    a = [params(1234, i) for i in range(6)]
    b = [params(4321, i) for i in range(6)]
    x_id = to_tensor(np.stack([render(p, *p1, s) for p in a]))
    x_pose = to_tensor(np.stack([render(p, *p2, s) for p in b]))
    truth = to_tensor(np.stack([render(p, *p2, s) for p in a]))
    with torch.no_grad():
        out = model.swap(x_id, x_pose)
    swap_err = (out - truth).pow(2).mean().item()
    copy_identity_err = (x_id - truth).pow(2).mean().item()
    assert swap_err < copy_identity_err, (swap_err, copy_identity_err)
    # and the identity is kept: an object's identity code hardly moves between its two
    # poses, compared with how far apart two objects' codes are (0.1.0's models, which
    # ignored identity, had this ratio at about 0.5)
    with torch.no_grad():
        code_a, code_a2 = model.encode_identity(x_id), model.encode_identity(truth)
    within = (code_a - code_a2).norm(dim=1).mean().item()
    between = (code_a - code_a.roll(1, 0)).norm(dim=1).mean().item()
    assert between > 2 * within, (between, within)


def test_bundled_heads_follow_the_mouth_of_unseen_faces():
    """animate's demo: a face driven by a talking clip must open and close its mouth.

    For unseen faces A (identity) and B (pose) at near-frontal poses (the talking
    clips' range), the change of swap(A, B) between B's closed and open mouth
    must point the way the ground truth changes (A rendered with its mouth
    closed, then open): cosine similarity of the two difference images. The
    heads model of 0.1.0 drew no mouth: 0.08.
    """
    import torch

    from posecli.data.synth.heads import head_params, render_head
    from posecli.media.convert import to_tensor

    model = load_model(_bundled("heads"))
    s = model.image_size
    a = [head_params(1234, i) for i in range(8)]
    b = [head_params(4321, i) for i in range(8)]
    cos = []
    for yaw, pitch in ((0.0, 0.0), (-15.0, 5.0), (15.0, -5.0)):
        def batch(params, mouth, y=yaw):
            return to_tensor(np.stack([render_head(p, y, pitch, mouth, s) for p in params]))

        x_id = batch(a, 0.0, -yaw)
        with torch.no_grad():
            out_closed, out_open = model.swap(x_id, batch(b, 0.0)), model.swap(x_id, batch(b, 1.0))
        truth = (batch(a, 1.0) - batch(a, 0.0)).flatten(1)
        cos += torch.nn.functional.cosine_similarity((out_open - out_closed).flatten(1), truth).tolist()
    assert np.mean(cos) > MOUTH_COSINE and min(cos) > 0, (np.mean(cos), cos)
