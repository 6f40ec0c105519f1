"""Copy a trained model into weights/ as fp16, with its eval report in the metadata.

    .venv/bin/python scripts/bundle_model.py TRAINED.safetensors NAME [--eval report.json] [--set KEY=VALUE] [--overwrite]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from posecli.modelfile import bundled_dir, load_model, save_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("name")
    ap.add_argument("--eval", dest="eval_report", help="JSON written by posecli eval --json")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="set a training-summary field (e.g. hardware=...) in the bundled copy")
    ap.add_argument("--overwrite", action="store_true")
    a = ap.parse_args()
    model = load_model(a.model)
    training = dict(model.meta.get("training", {}))
    if a.eval_report:
        report = json.loads(Path(a.eval_report).read_text())
        training["eval"] = {k: report[k] for k in ("data", "transfer", "transfer_mse_over_best_copy", "reconstruction",
                                                   "leakage", "pairs") if k in report}
    for kv in a.set:
        key, _, value = kv.partition("=")
        training[key] = value
    out = save_model(bundled_dir() / f"{a.name}.safetensors", model, training=training, overwrite=a.overwrite, half=True)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
