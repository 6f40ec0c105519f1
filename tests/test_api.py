"""The library API: importable without torch, every name resolves."""

import subprocess
import sys


def test_import_is_light_and_names_resolve():
    code = ("import sys, posecli; assert 'torch' not in sys.modules, 'torch loaded at import';"
            "[getattr(posecli, n) for n in posecli.__all__]; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok"


def test_library_swap_roundtrip(tiny_model_path):
    import numpy as np

    import posecli

    model = posecli.load_model(tiny_model_path)
    a = np.full((40, 50, 3), 200, np.uint8)
    out = posecli.swap(model, a, a)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
