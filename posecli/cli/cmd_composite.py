"""posecli composite: objects of a new identity placed into scenes, in the poses of the objects they replace."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from posecli.cli.common import (Debug, Device, Json, KeepGoing, Overwrite, Quiet, SkipExisting, Verbose, cli_errors,
                                confirm, default_model_option, emit_json, shard_option)

DEFAULT_MODEL = "cars"

def _opt(*names: str, metavar: str | None = None, **kw):
    return typer.Option(*names, metavar=metavar, show_default=kw.pop("show_default", False), **kw)


Scene = Annotated[str, _opt("--scene", metavar="IMG|DIR", help="The scene image, '-' (stdin), or a folder / quoted "
                            "glob of scenes (then -o is a folder and --boxes names each scene's boxes).")]
Ident = Annotated[str, _opt("--id", metavar="IMG", help="An image of the identity to put in (any view).")]
Boxes = Annotated[list[str], _opt("--box", metavar="X,Y,W,H", help="An object to replace (repeatable).")]
BoxesFile = Annotated[Optional[str], _opt(
    "--boxes", metavar="FILE", help="Boxes from a .json file (a list of [x,y,w,h] or of {\"box\": [...]}, as "
    "`posecli synth scene` writes; or scene file name -> such a list) or a .csv file (columns x,y,w,h or "
    "scene,x,y,w,h). A plain list (like --box) applies to every scene.")]
Poses = Annotated[list[str], _opt("--pose", metavar="IMG", help="Add an object posed like this image (pairs with "
                                  "--at; repeatable).")]
At = Annotated[list[str], _opt("--at", metavar="X,Y,W,H", help="Where the --pose object goes (one per --pose).")]
ModelOpt = default_model_option(DEFAULT_MODEL)
ShardOpt = shard_option()
Output = Annotated[str, _opt("-o", "--output", metavar="OUT", help="The output image ('-' = PNG on stdout); a "
                             "folder for a folder of scenes (each keeps its file name).")]
MatteOpt = Annotated[str, _opt("--matte", metavar="KIND", show_default=True, help="auto | rembg | grabcut | model. "
                               "auto: rembg when its model file is on disk, else the model matte refined by GrabCut. Measured "
                               "on toy streets (MSE to the truth / untouched scene's, bundled model | true renders): "
                               "auto 0.408 | 0.116, grabcut 0.424 | 0.182, model 0.451 | 0.107 (40 streets).")]
BlendOpt = Annotated[str, _opt("--blend", metavar="KIND", show_default=True,
                               help="alpha (feathered) | poisson (cv2.seamlessClone). Measured as for --matte: alpha "
                               "0.408 | 0.116, poisson 0.432 | 0.183.")]
Harmonize = Annotated[bool, _opt("--harmonize", help="Move each object's colour statistics (Lab mean/std) towards "
                                 "a ring around its box. On toy streets it made the result worse (0.65 against 0.41 "
                                 "with the bundled model): for scenes whose lighting differs from the model's.")]
Strength = Annotated[float, _opt("--harmonize-strength", metavar="S", min=0.0, max=1.0, show_default=True,
                                 help="How far --harmonize goes: 1 matches the surroundings fully.")]
Remove = Annotated[bool, _opt("--remove-original/--keep-original", show_default=True, help="Find each replaced "
                              "object in its crop and inpaint it from the scene's own rows before pasting, so "
                              "nothing of it shows around a smaller new one. On 40 toy streets the MSE to the "
                              "truth, as a fraction of the untouched scene's, is 0.41 with removal and 0.46 without "
                              "(bundled cars model); removal lowers it on 30 streets and raises it on 10.")]
Shadow = Annotated[float, _opt("--shadow", metavar="S", min=0.0, max=1.0, show_default=True,
                               help="Darkness of a soft contact shadow under each placed object (0: none). On toy "
                               "streets, where the old car's shadow is kept, 0.35 measured 0.396 against 0.392 (bundled "
                               "model, 6 streets) and 0.123 against 0.122 (true renders): for objects without a shadow.")]
IdColour = Annotated[float, _opt("--id-colour", metavar="S", min=0.0, max=1.0, show_default=True,
                                 help="Move each generated object's colours (Lab mean and spread) this far towards "
                                 "the --id image's object (0: off): a model drifts in colour on identities it never "
                                 "saw. With --fit-identity (the default) it does not help: on 40 toy streets (MSE / untouched, "
                                 "bundled model) 0 scores 0.408, 0.5 scores 0.428, 1 scores 0.466.")]
FitIdentity = Annotated[int, _opt("--fit-identity", metavar="STEPS", min=0, max=10000, show_default=True,
                                  help="Refine the --id image's identity code by this many steps of test-time "
                                  "latent optimisation (the generator redraws the --id image; 0: the encoder's code "
                                  "alone). On 40 toy streets (MSE to the truth / untouched scene's, bundled model): 100 "
                                  "steps 0.408, 0 steps 0.411, 200 steps 0.416. About 7 s of one CPU core for a 64-px "
                                  "model, once per run.")]
Upscale = Annotated[str, _opt("--upscale", metavar="HOW", show_default=True, help="How generated squares are "
                              "enlarged to their box: linear | cubic | lanczos | sharp (lanczos + unsharp mask). On "
                              "6 toy streets with the bundled 64-px model: linear 0.392, cubic 0.399, lanczos 0.398, "
                              "sharp 0.402 (MSE / untouched); with sharp renders the others are a little better (true "
                              "renders: linear 0.122, cubic 0.118, sharp 0.115). Colours are scaled premultiplied by "
                              "the matte, so no edge takes in the render's background.")]
Inpaint = Annotated[str, _opt("--inpaint", metavar="HOW", show_default=True, help="How --remove-original fills: "
                              "rows (copied from the same rows beside the object, lane markings continue) | telea "
                              "(OpenCV's diffusion fill). On 6 toy streets: rows 0.392, telea 0.476 (bundled model; 0.122 "
                              "against 0.207 with true renders).")]
Choke = Annotated[bool, _opt("--choke/--no-choke", show_default=True, help="Pull each object's matte in by about "
                             "a pixel before softening it (hides the render's background fringe). On 6 toy streets: "
                             "0.392 with it, 0.415 without (bundled model).")]
Fit = Annotated[str, _opt("--fit", metavar="HOW", show_default=True, help="object: as frame, then the new object "
                          "is stretched sideways to the length of the object it replaces, found in the scene (the "
                          "model draws some views too short or too wide; on 40 toy streets 0.408 of the untouched "
                          "scene's error against 0.429 with frame, bundled model); frame: a box is the model's "
                          "framing window (as `posecli synth scene` writes them), the object is drawn as the model "
                          "frames it; box: a box drawn tightly around an object, the object is scaled to fill it.")]
Margin = Annotated[float, _opt("--margin", metavar="F", min=0.0, max=2.0, show_default=True,
                               help="Grow each box's square window by this fraction before it goes to the model "
                               "(e.g. 0.2 with tight boxes, to give the model its usual framing).")]
AllowEmpty = Annotated[bool, _opt("--allow-empty", help="Write a scene unchanged when it has no boxes or no "
                                  "object could be placed (otherwise an error).")]
DebugMasks = Annotated[Optional[str], _opt(
    "--debug-masks", metavar="FOLDER",
    help="Write each box's crops and mattes here as <scene>_box<i>_<what>.png (replaced if present).")]


def composite(
    scene: Scene,
    identity: Ident,
    output: Output,
    box: Boxes = [],  # noqa: B006 (typer reads the default)
    boxes: BoxesFile = None,
    pose: Poses = [],  # noqa: B006
    at: At = [],  # noqa: B006
    model: ModelOpt = None,
    matte: MatteOpt = "auto",
    blend: BlendOpt = "alpha",
    harmonize: Harmonize = False,
    harmonize_strength: Strength = 0.5,
    remove_original: Remove = True,
    shadow: Shadow = 0.0,
    id_colour: IdColour = 0.0,
    fit_identity: FitIdentity = 100,
    upscale: Upscale = "linear",
    inpaint: Inpaint = "rows",
    choke: Choke = True,
    fit: Fit = "object",
    margin: Margin = 0.0,
    debug_masks: DebugMasks = None,
    allow_empty: AllowEmpty = False,
    device: Device = "auto",
    overwrite: Overwrite = False,
    skip_existing: SkipExisting = False,
    keep_going: KeepGoing = False,
    shard: ShardOpt = None,
    json_out: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = 0,
    debug: Debug = False,
) -> None:
    """Replace the objects in boxes of a scene with the --id identity, each in the pose of the object it replaces.

    For each box: its square window gives the pose, the model generates the
    identity in that pose, a matte cuts it out, and it is put back into the box
    (--fit object: as the model frames it in the window, stretched sideways to
    the replaced object's length; --fit frame: as the model frames it; --fit
    box: scaled to fill a tight box, standing on its bottom edge) and blended in. Nothing
    outside the boxes changes. Boxes are painted back to front: by their
    bottom edge (y + h) ascending, so lower (nearer) objects cover higher ones.
    Only the crops go through the model: scenes of any size work. The output
    has the scene's size and mode (grey, RGB or RGBA). --json prints, per scene,
    each box's pose source, matte, placement, stretch (--fit object) and paint order.

    \b
    Examples:
      posecli composite --scene street.png --id sportscar.png --box 120,340,260,150 --fit box --margin 0.2 -o out.png
      posecli composite --scene demo/scene.png --id demo/replacement.png --boxes demo/boxes.json --remove-original -o out.png
      posecli composite --scene frames/ --boxes boxes.json --id car.png -o out/ --skip-existing
    """  # noqa: E501 (the examples are kept whole)
    with cli_errors(debug, quiet, verbose):
        _run(scene, identity, output, box, boxes, pose, at, model, matte, blend, fit, margin,
             harmonize_strength if harmonize else 0.0, remove_original, debug_masks, device, overwrite,
             skip_existing, keep_going, json_out, quiet, allow_empty=allow_empty, shard_spec=shard,
             look=dict(shadow=shadow, upscale=upscale, inpaint_with=inpaint, choke=choke, id_colour=id_colour,
                       fit_identity=fit_identity))




def _scenes(scene: str) -> tuple[list[str], bool]:
    """(scene paths, whether this is a batch: a folder or a glob)."""
    from pathlib import Path

    from posecli.inputs import IMAGE_EXTS, expand_inputs

    paths = expand_inputs([scene], IMAGE_EXTS)
    return paths, scene != "-" and (Path(scene).is_dir() or len(paths) > 1 or not Path(scene).exists())


def _run(scene, identity, output, box_specs, boxes_file, pose_specs, at_specs, model_name, matte, blend, fit, margin,
         strength, remove_original, debug_masks, device, overwrite, skip_existing, keep_going, json_out, quiet,
         allow_empty=False, shard_spec=None, look=None):
    import logging
    from pathlib import Path

    from posecli.errors import InputError, OutputExistsError, UsageError
    from posecli.pipelines.blending import BLENDS
    from posecli.pipelines.composite import FITS
    from posecli.pipelines.matting import MATTES
    from posecli.regions import Box

    log = logging.getLogger("posecli")
    if matte not in MATTES:
        raise UsageError(f"--matte {matte}: expected one of {', '.join(MATTES)}")
    if blend not in BLENDS:
        raise UsageError(f"--blend {blend}: expected one of {', '.join(BLENDS)}")
    if fit not in FITS:
        raise UsageError(f"--fit {fit}: expected one of {', '.join(FITS)}")
    from posecli.pipelines.composite import INPAINTS, UPSCALES

    look = look or {}
    if look.get("upscale", "cubic") not in UPSCALES:
        raise UsageError(f"--upscale {look['upscale']}: expected one of {', '.join(UPSCALES)}")
    if look.get("inpaint_with", "rows") not in INPAINTS:
        raise UsageError(f"--inpaint {look['inpaint_with']}: expected one of {', '.join(INPAINTS)}")
    if len(pose_specs) != len(at_specs):
        raise UsageError(f"--pose and --at come in pairs: got {len(pose_specs)} --pose and {len(at_specs)} --at")
    if json_out and output == "-":
        raise UsageError("-o - and --json would both write to stdout; pick one")
    if [scene, identity, *pose_specs].count("-") > 1:
        raise UsageError("'-' (stdin) can be read only once")
    fixed = [Box.parse(b, "--box") for b in box_specs]
    adds = [Box.parse(a, "--at") for a in at_specs]

    from posecli.pipelines.boxfile import boxes_for, load_boxes

    file_boxes = load_boxes(boxes_file) if boxes_file else None
    scene_paths, batch = _scenes(scene)
    if not (fixed or adds or file_boxes):
        raise UsageError("no boxes: give --box x,y,w,h, --boxes FILE, or --pose IMG --at x,y,w,h")
    if batch:
        out_dir = Path(output)
        if output == "-" or out_dir.is_file():
            raise UsageError(f"-o {output}: a folder of scenes needs an output folder")
        names = [Path(p).name for p in scene_paths]
        if len(set(names)) != len(names):
            raise UsageError("two scenes share a file name; their outputs would collide", scene)
        out_of = {p: out_dir / Path(p).name for p in scene_paths}
        if isinstance(file_boxes, dict):
            unknown = set(file_boxes) - {k for p in scene_paths for k in (Path(p).name, Path(p).stem)}
            if unknown:
                log.warning(f"{boxes_file}: no scene for {len(unknown)} entr(y/ies): {', '.join(sorted(unknown)[:5])}")
    else:
        if Path(output).is_dir():
            raise UsageError(f"-o {output}: is a folder; one scene gives one image file (e.g. {output}/out.png)")
        out_of = {scene_paths[0]: None if output == "-" else Path(output)}
    from posecli.batch import resolve_shard, take_shard

    # --shard I/N or the torchrun rank: this run's scenes, by file name
    scene_paths = take_shard(scene_paths, resolve_shard(shard_spec), key=lambda p: Path(p).name)
    if not scene_paths:
        log.warning("nothing to do: no scene falls to this shard")
        return
    # Existing outputs: refused before any work (unless --keep-going reports them per scene) or skipped.
    existing = [p for p, o in out_of.items() if o is not None and o.exists() and not overwrite]
    if existing and skip_existing:
        log.warning(f"skipping {len(existing)} existing output(s) (--skip-existing)")
        scene_paths = [p for p in scene_paths if p not in existing]
        if not scene_paths:
            return
    elif existing and not keep_going:
        raise OutputExistsError(out_of[existing[0]])
    if output != "-":  # read-only or full: before any work
        from posecli.fileio import check_folder_writable

        check_folder_writable(Path(output) if batch else Path(output).parent, output)

    from posecli.batch import run_batch
    from posecli.media.images import read_image, write_image
    from posecli.pipelines.composite import Target, as_targets, composite, natural_layout
    from posecli.pipelines.matting import Matter
    from posecli.progress import progress
    from posecli.modelfile import load_model_or_default
    from posecli.runtime import resolve_device

    matter = Matter(matte)  # before any work: rembg's model either loads now or the run stops here
    dev = resolve_device(device)
    net = load_model_or_default(model_name, DEFAULT_MODEL, dev)
    log.info(f"model {net.path} ({net.meta['method']}, {net.image_size}px) on {dev}; matte {matter.used}")
    id_pixels = read_image(identity)
    added = [Target(b, read_image(p), p) for p, b in zip(pose_specs, adds)]

    def one(path: str):
        pixels = natural_layout(read_image(path, alpha=True))
        h, w = pixels.shape[:2]
        targets = [*fixed, *boxes_for(file_boxes, path, boxes_file), *added]
        if not targets and not allow_empty:
            raise InputError(f"no boxes for this scene in {boxes_file}: nothing to place "
                             f"(--allow-empty writes such scenes unchanged)", path)
        try:  # regions' one rule: clipped to the scene with a notice; no pixel inside is an error
            targets = as_targets(targets, w, h)
        except UsageError as e:
            raise UsageError(str(e), path) from None
        res = composite(net, pixels, id_pixels, targets, matte=matter, blend=blend, fit=fit, margin=margin,
                        harmonize_strength=strength, remove_original=remove_original, debug=bool(debug_masks),
                        **(look or {}))
        if targets and all(r.get("placement") is None for r in res.report) and not allow_empty:
            raise InputError(f"placed nothing: every box's generated object was empty (see the notices above; "
                             f"--allow-empty writes the scene anyway)", path)
        target = out_of[path]
        write_image("-" if target is None else target, res.pixels, overwrite=overwrite)
        if debug_masks:
            stem = "stdin" if path == "-" else Path(path).stem
            for name, img in res.debug.items():
                write_image(Path(debug_masks) / f"{stem}_{name}.png", img, overwrite=True)
        info = {"scene": path, "output": str(target or "-"), "size": [w, h], "matte": matter.used, "blend": blend,
                "fit": fit, "boxes": res.report}
        if json_out:
            emit_json(info)
        return info

    look = dict(look or {})
    if any(not (skip_existing and out_of[p] is not None and Path(out_of[p]).exists()) for p in scene_paths):
        # the --id image's code once for every scene (its fit has its own bar)
        from posecli.pipelines.composite import identity_code, whole_square

        look["id_code"] = identity_code(
            net, whole_square(id_pixels, net.image_size), look.get("fit_identity", 0),
            progress=lambda it, total: progress(it, total=total, desc="fitting the identity", unit="step",
                                                quiet=quiet or output == "-"))
    with progress(total=len(scene_paths), desc="composite", unit="scene", quiet=quiet or output == "-") as bar:
        res = run_batch(scene_paths, one, output_of=lambda p: out_of[p], overwrite=overwrite,
                        skip_existing=skip_existing, keep_going=keep_going, bar=bar)
    res.raise_if_failed(where=output)
    if res.done:
        confirm(f"wrote {len(res.done)} image(s) to {output}" if batch
                else f"wrote {'the image to stdout' if output == '-' else output}")


def register(app: typer.Typer) -> None:
    app.command("composite")(composite)
