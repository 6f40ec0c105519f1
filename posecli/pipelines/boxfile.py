"""Boxes files for `posecli composite --boxes`: JSON or CSV, one scene or a folder of scenes.

JSON: a list of [x, y, w, h] or of objects with a "box" key (what `posecli
synth scene` writes to boxes.json; other keys are ignored), or an object
mapping scene file names (or stems) to such lists. CSV: columns x,y,w,h or
scene,x,y,w,h, with or without a header. Errors name the file and the entry.
"""

from __future__ import annotations

from ..regions import Box, box_values


def _box_of(v, where: str, path) -> Box:
    """[x, y, w, h], {"box": [...]} or {"x":, "y":, "w":, "h":} -> Box; InputError naming the entry."""
    from ..errors import InputError

    if isinstance(v, dict):
        if "box" in v:
            v = v["box"]
        elif all(k in v for k in "xywh"):
            v = [v[k] for k in "xywh"]
        else:
            raise InputError(f"{where}: an object needs a \"box\": [x, y, w, h] (or x, y, w, h keys)", path)
    if not isinstance(v, (list, tuple)) or len(v) != 4:
        raise InputError(f"{where}: expected [x, y, w, h], got {str(v)[:60]}", path)
    try:
        return Box(*box_values(v))  # the one rule of regions.box_values, as for --box
    except ValueError as e:
        raise InputError(f"{where}: {e}, got {str(list(v))[:60]}", path) from None


def _box_list(v, where: str, path) -> list[Box]:
    from ..errors import InputError

    if not isinstance(v, list):
        raise InputError(f"{where}: expected a list of boxes, got {type(v).__name__}", path)
    return [_box_of(e, f"{where}[{i}]", path) for i, e in enumerate(v)]


def _csv_boxes(text: str, path):
    import csv

    from ..errors import InputError

    rows = [(n, [c.strip() for c in r]) for n, r in enumerate(csv.reader(text.splitlines()), 1)
            if r and any(c.strip() for c in r) and not r[0].lstrip().startswith("#")]
    if not rows:
        raise InputError("no rows (expected columns x,y,w,h or scene,x,y,w,h)", path)
    n0, first = rows[0]
    header = [c.lower() for c in first]
    if set("xywh") <= set(header):
        cols, rows = header, rows[1:]
    elif len(first) in (4, 5):
        cols = list("xywh") if len(first) == 4 else ["scene", *"xywh"]
    else:
        raise InputError(f"line {n0}: expected a header naming x,y,w,h (and scene) or 4 or 5 columns", path)
    by_scene: dict[str, list[Box]] = {}
    flat: list[Box] = []
    for n, r in rows:
        if len(r) != len(cols):
            raise InputError(f"line {n}: {len(r)} columns, the header has {len(cols)}", path)
        d = dict(zip(cols, r))
        box = _box_of([d[k] for k in "xywh"], f"line {n}", path)
        if "scene" in d:
            by_scene.setdefault(d["scene"], []).append(box)
        else:
            flat.append(box)
    return by_scene if "scene" in cols else flat


def load_boxes(path) -> list[Box] | dict[str, list[Box]]:
    """Boxes from a .json or .csv file: a list (one scene) or scene name -> list (a folder of scenes).

    JSON: a list of [x, y, w, h] or of objects with a "box" key (the format of
    `posecli synth scene`'s boxes.json), or an object mapping scene file names
    to such lists. CSV: columns x,y,w,h or scene,x,y,w,h, with or without a header.
    """
    import json
    from pathlib import Path

    from ..errors import InputError

    p = Path(path)
    if not p.is_file():
        raise InputError("no such boxes file" if not p.exists() else "is not a file", p)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read the boxes file ({getattr(e, 'strerror', None) or e})", p) from None
    if p.suffix.lower() == ".csv":
        return _csv_boxes(text, p)
    if p.suffix.lower() != ".json":
        raise InputError("boxes files are .json or .csv", p)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"not valid JSON (line {e.lineno}: {e.msg})", p) from None
    if isinstance(data, dict):
        return {str(k): _box_list(v, str(k), p) for k, v in data.items()}
    return _box_list(data, "top level", p)


def boxes_for(boxes, scene_name: str, boxes_path) -> list[Box]:
    """The boxes of one scene: a list applies to every scene; a mapping is looked up by file name, then stem."""
    from pathlib import Path

    from ..errors import InputError

    if boxes is None:
        return []
    if isinstance(boxes, list):
        return boxes
    name = Path(scene_name).name
    for key in (name, Path(name).stem, scene_name):
        if key in boxes:
            return boxes[key]
    keys = ", ".join(list(boxes)[:5]) + (", ..." if len(boxes) > 5 else "")
    raise InputError(f"no entry for scene {name!r} (entries: {keys or 'none'})", boxes_path)
