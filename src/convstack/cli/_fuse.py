"""`convstack fuse`: merge a focus stack into one sharp image (and a depth map)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .. import _preload, _writer
from ..stack import DEFAULT_METHOD, DEFAULT_NOISE_FLOOR, METHODS, OutputError, StackError, fuse
from ..stack import io as _io
from ..stack.align import MODELS
from ..stack.depth import depth_to_image
from ..stack.registration_report import summary, write_report
from ._common import UserError, progress_bar
from ._startup import start_up_done

__all__ = ["add_merge_options", "register", "run"]


def register(subparsers: Any) -> None:
    """Add the `fuse` subcommand."""
    parser = subparsers.add_parser(
        "fuse",
        help="fuse a focus stack into one sharp image",
        description=(
            "Align the frames of a focus stack to a reference frame, measure where each "
            "is sharp and merge them into one image that is sharp everywhere. The output "
            "keeps the frames' bit depth (8 or 16) and the reference frame's EXIF/ICC."
        ),
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="frames: files, a folder or a glob, in focus order by (natural) name",
    )
    parser.add_argument(
        "-o", "--output", required=True, help="fused image (.png, .jpg, .tif); format by extension"
    )
    parser.add_argument("--depth-map", metavar="FILE", help="also write the depth map here")
    add_merge_options(parser)
    parser.add_argument(
        "--save-steps",
        metavar="DIR",
        help="write intermediate images (aligned frames, sharpness, depth) as 16-bit PNG to DIR",
    )
    parser.add_argument(
        "--retouch",
        metavar="STROKES",
        help="replay the retouch strokes that `convstack view` saved (a .strokes.json file) "
        "on the fused image, from the aligned frames, before writing it",
    )
    parser.add_argument("--force", action="store_true", help="replace existing output files")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--report",
        metavar="FILE",
        help="write each frame's registration (transform, residual, confidence, status, "
        "flags) as JSON to FILE; frames not trusted are named on stderr either way",
    )
    parser.add_argument(
        "--index",
        metavar="AXIS=N[,...]",
        help="of a z-stack file (one multi-page, ImageJ or OME-TIFF): the entry of each axis "
        "other than Z, Y, X, C to stack, as T=0 or T=0,P=2",
    )
    _add_scientific_options(parser)
    parser.set_defaults(func=run, ends_start_up=True)  # (once numba is up: see run)


def _noise_floor(text: str) -> float | None:
    """``--noise-floor``: a z > 0, or 'off' (None)."""
    if text.strip().lower() == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0 or 'off'; got {text!r}")
    return value


def _memory_limit(text: str) -> int:
    """``--memory-limit``: a size such as 2GiB, 512MB or a number of bytes."""
    from ..limits import parse_size

    try:
        return parse_size(text, "--memory-limit")
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a size > 0 such as 2GiB, 512MB or a number of bytes; got {text!r}"
        ) from None


def add_merge_options(parser: argparse.ArgumentParser) -> None:
    """Add the options that say how a stack is fused (not where its files are): shared
    by `fuse` and `batch`, which passes them on to `fuse` for every stack."""
    parser.add_argument(
        "--align",
        choices=MODELS,
        default="similarity",
        metavar="MODEL",
        help="motion model: " + ", ".join(MODELS) + " (default: similarity)",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default=DEFAULT_METHOD,
        metavar="NAME",
        help="merge method: " + ", ".join(METHODS) + f" (default: {DEFAULT_METHOD})",
    )
    parser.add_argument(
        "--reference",
        type=int,
        metavar="N",
        help="index of the reference frame, 0 = first (default: the middle one)",
    )
    parser.add_argument(
        "--photometric",
        action="store_true",
        help="match each frame's brightness and contrast to the reference (exposure drift)",
    )
    parser.add_argument(
        "--noise-floor",
        type=_noise_floor,
        default=DEFAULT_NOISE_FLOOR,
        metavar="Z",
        help="pyramid: average the frames where no frame's detail stands Z sigmas of the "
        f"measured noise above it (quieter out-of-focus backgrounds; default "
        f"{DEFAULT_NOISE_FLOOR:g}; 'off' picks grain by grain)",
    )
    parser.add_argument(
        "--memory-limit",
        type=_memory_limit,
        metavar="SIZE",
        help="the most memory the fuse may take, all its processes (e.g. 2GiB): it decides "
        "whether frames are read in a process of their own and the merge's strip size, and "
        "refuses before reading if even the leanest way would not fit (default: "
        "CONVSTACK_MEMORY_LIMIT, else half of the memory)",
    )
    parser.add_argument(
        "--snap-depth",
        action="store_true",
        help="move the depth map's steps onto the fused image's edges (occlusions: the near "
        "side no longer grows by the focus window's reach); changes only --depth-map",
    )
    parser.add_argument(
        "--interpolation",
        choices=("cubic", "quintic"),
        default="quintic",
        help="how aligned frames are resampled: quintic (default), a B-spline that keeps "
        "fine detail the cubic softens (+0.7-0.8 dB on breathing stacks), or Keys cubic",
    )
    parser.add_argument(
        "--prefer",
        choices=("none", "near", "far"),
        default="none",
        help="at occlusions found in the depth map, keep the near (or far) layer whole: "
        "near objects' edges free of the far layer's texture (default: none)",
    )


def _check_output(path: Path, force: bool, what: str, inputs: _writer.Inputs) -> None:
    """Refuse an output early (before the slow work) for the reasons write_image would."""
    try:
        _io.check_output(path, overwrite=force, inputs=inputs)
    except OutputError as exc:
        raise UserError(f"{what} {exc}") from None


def _step_names(count: int) -> list[str]:
    """The files ``--save-steps`` writes for ``count`` frames (see ``fuse``'s on_step)."""
    names = [f"{kind}_{index:03d}" for index in range(count) for kind in ("aligned", "sharpness")]
    return [*names, "depth_raw", "confidence", "depth"]


def _check_steps(folder: Path, count: int, force: bool, inputs: _writer.Inputs) -> list[Path]:
    """Make the ``--save-steps`` folder if needed and refuse, before the work, any step
    file that exists (without ``--force``) or is an input frame (``--force`` or not)."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--save-steps {folder}: is a file, not a folder.")
    if not folder.exists():
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise UserError(f"--save-steps {folder}: cannot create it ({reason}).") from None
    paths = [folder / f"{name}.png" for name in _step_names(count)]
    for path in paths:
        _check_output(path, force, "--save-steps", inputs)
    return paths


def _step_image(name: str, array: NDArray[Any]) -> NDArray[Any]:
    """An intermediate array as a 16-bit image (maps rescaled to their maximum)."""
    data = np.asarray(array, dtype=np.float32)
    if not name.startswith("aligned"):
        top = float(data.max())
        data = data / np.float32(top) if top > 0 else data
    return np.rint(np.clip(data, 0.0, 1.0) * 65535.0).astype(np.uint16)


def run(args: argparse.Namespace) -> int:
    """Run the subcommand.

    Every file it writes is checked before any frame is read: its folder exists and is
    writable, it does not exist (unless ``--force``), and it is not one of the input
    frames (``--force`` or not); and they are written by ``convstack._writer``.
    """
    output = Path(args.output)
    depth_path = Path(args.depth_map) if args.depth_map else None
    try:
        frames = _io.list_frames(args.inputs)
    except StackError as exc:
        raise UserError(str(exc)) from None
    inputs = _writer.Inputs(frames)
    files = frames  # the input files (a z-stack: one file, its planes the frames)
    zstack = _open_zstack(frames, getattr(args, "index", None))
    if zstack is not None:
        frames = zstack.frames()
        if not _ome_output(output, zstack.channels, zstack) and zstack.channels not in (1, 3):
            raise UserError(
                f"output {output}: {zstack.channels} channels; PNG and JPEG hold grey or "
                "RGB, write them to a .tif."
            )
    _check_output(output, args.force, "output", inputs)
    if depth_path is not None:
        _check_output(depth_path, args.force, "depth map", inputs)
        if _same_target(depth_path, output):
            raise UserError("--depth-map must differ from the output file.")
    report_path = _path(getattr(args, "report", None))
    if report_path is not None:
        try:  # refused now rather than after the work
            _writer.check_target(report_path, overwrite=args.force, inputs=inputs)
        except _writer.OutputRefusedError as exc:
            raise UserError(f"--report {exc}") from None
        for other, flag in ((output, "-o"), (depth_path, "--depth-map")):
            if other is not None and _same_target(report_path, other):
                raise UserError(f"--report must differ from the {flag} file.")
    science = _Science(args, zstack, [output, depth_path], inputs)
    if len(frames) < 2:
        try:  # a lone file may say why it is alone (a multi-page TIFF) or unreadable
            _io.read_image(frames[0])
        except StackError as exc:
            raise UserError(str(exc)) from None
        raise UserError(f"focus stacking needs at least two frames; got {len(frames)}.")
    if args.reference is not None and not 0 <= args.reference < len(frames):
        raise UserError(
            f"--reference must be a frame index in [0, {len(frames) - 1}]; got {args.reference}."
        )

    strokes = _read_strokes(args.retouch, len(frames)) if args.retouch else None
    retouch_frames: dict[int, NDArray[Any]] = {}
    on_step: Callable[[str, NDArray[Any]], None] | None = None
    if args.save_steps:
        folder = Path(args.save_steps)
        for step in _check_steps(folder, len(frames), args.force, inputs):
            for other, flag in ((output, "-o"), (depth_path, "--depth-map")):
                if other is not None and _same_target(step, other):
                    raise UserError(f"--save-steps would write {step}, the {flag} file.")

        def write_step(name: str, array: NDArray[Any]) -> None:
            _io.write_image(
                folder / f"{name}.png",
                _step_image(name, array),
                overwrite=args.force,
                inputs=inputs,
            )

        on_step = write_step
    if strokes is not None:
        on_step = _keep_frames(strokes, retouch_frames, on_step)
    # the frames not trusted are printed here, not by logging's last-resort handler
    logging.getLogger("convstack.stack.pipeline").addHandler(logging.NullHandler())
    # numba's import and set-up and the kernels both processes call, done once, here:
    # the reader child that fuse forks inherits them; meanwhile the frames decode
    ahead = _read_ahead(args, frames, zstack)
    try:
        kernels = _fuse_kernels(args, frames, science)
        # the PNG reader's kernel only for frames still to decode
        kernels["png"] = kernels["png"] and (ahead is None or not ahead.complete())
        _preload.load_fuse_kernels(**kernels)
    finally:
        if ahead is not None:
            ahead.stop()  # (before fuse forks)
    start_up_done()
    try:
        result = _fuser(args)(
            frames,
            method=args.method,
            align=args.align,
            reference=args.reference,
            photometric=args.photometric,
            progress=progress_bar(args.quiet),
            on_step=on_step,
            focus_channel=science.focus_channel,
            height=science.wants_height,
            noise_floor=args.noise_floor,
            snap_depth=args.snap_depth,
            memory_limit=getattr(args, "memory_limit", None),
            interpolation=args.interpolation,
            prefer=args.prefer,
        )
        untrusted = summary(result.frames)
        if untrusted:
            print(f"warning: {untrusted}", file=sys.stderr)
        if report_path is not None:
            write_report(result.frames, report_path, overwrite=args.force, inputs=inputs)
        image = result.image
        if strokes is not None:
            image = _replay(strokes, image, retouch_frames, args.retouch)
        metadata = _io.read_metadata(files[0] if zstack else frames[result.reference])
        _write_output(args, output, image, zstack, metadata, inputs)
        if depth_path is not None:
            jpeg = depth_path.suffix.lower() in (".jpg", ".jpeg")
            depth = depth_to_image(result.depth, len(frames), np.uint8 if jpeg else np.uint16)
            _io.write_image(depth_path, depth, overwrite=args.force, inputs=inputs)
        science.write(result, image, args.force, inputs)
    except (StackError, ValueError, TypeError) as exc:
        raise UserError(str(exc)) from None
    finally:
        _io.drop_read_ahead()
    return 0


#: The most bytes of frames decoded while numba starts (and at most a 16th of the
#: memory limit): the whole of small stacks, the first frames of others.
READ_AHEAD_BYTES = 256 << 20


def _read_ahead(args: argparse.Namespace, frames: list[Any], zstack: Any) -> Any:
    """Start decoding the frames, in the order fuse reads them, while numba starts
    (:class:`convstack.stack.io.ReadAhead`); None for a z-stack or frames with alpha
    (read again for it)."""
    from ..limits import get_memory_limit
    from ..stack._registrar import processing_order

    if zstack is not None or getattr(args, "alpha", False):
        return None
    limit = getattr(args, "memory_limit", None) or get_memory_limit()
    reference = len(frames) // 2 if args.reference is None else args.reference
    order = [frames[index] for index, _ in processing_order(len(frames), reference)]
    return _io.ReadAhead(order, min(READ_AHEAD_BYTES, limit // 16))


def _fuse_kernels(args: argparse.Namespace, frames: list[Any], science: _Science) -> dict[str, Any]:
    """What :func:`convstack._preload.load_fuse_kernels` loads for this fuse: the
    kernels it will call (:func:`convstack._preload.fuse_kernels`; a z-stack's planes
    are no paths: no header, no PNG reader)."""
    return _preload.fuse_kernels(
        frames, align=args.align, method=args.method, focus_channel=science.focus_channel
    )


def _add_scientific_options(parser: argparse.ArgumentParser) -> None:
    """Options for z-stacks and measured heights (issue 15)."""
    parser.add_argument(
        "--focus-channel",
        metavar="N|W,W,...",
        help="decide focus on channel N (0 = first), or on the channels weighted W,W,...; "
        "the same choice applies to every channel (default: the luma)",
    )
    parser.add_argument(
        "--height-map",
        metavar="FILE",
        help="write heights in micrometres (float32 TIFF): the sub-frame peak of each "
        "pixel's focus curve times the z-step",
    )
    parser.add_argument(
        "--confidence",
        metavar="FILE",
        help="write the height map's confidence (float32 TIFF, 0 = flat focus curve, 1 = one "
        "sharp frame)",
    )
    parser.add_argument(
        "--z-step",
        metavar="LENGTH",
        help="spacing of the frames along Z, as 2.5um, 500nm or 0.01mm (default: the file's "
        "OME PhysicalSizeZ or ImageJ spacing)",
    )
    parser.add_argument(
        "--mesh",
        metavar="FILE.ply",
        help="write the height map as a coloured surface mesh (PLY; MeshLab, Blender)",
    )
    parser.add_argument(
        "--mesh-step",
        type=int,
        default=1,
        metavar="N",
        help="a mesh vertex every N pixels (default 1; big images)",
    )
    parser.add_argument(
        "--alpha",
        action="store_true",
        help="keep the frames' alpha channel (RGBA, grey + alpha): the output's alpha is the "
        "union of their coverage (.png or .tif)",
    )
    parser.add_argument(
        "--float32",
        action="store_true",
        help="write the fused image as float32 on [0, 1] (a .tif), for HDR-ish pipelines",
    )


class _Science:
    """What --focus-channel, --height-map, --confidence, --z-step and --mesh ask, checked
    before the work; ``write`` writes their files after it."""

    def __init__(
        self, args: argparse.Namespace, zstack: Any, others: list[Path | None], inputs: Any
    ) -> None:
        from ..stack.height import parse_length

        self.focus_channel = _parse_focus_channel(getattr(args, "focus_channel", None), zstack)
        self.height_path = _path(getattr(args, "height_map", None))
        self.confidence_path = _path(getattr(args, "confidence", None))
        self.mesh_path = _path(getattr(args, "mesh", None))
        mesh_step = getattr(args, "mesh_step", None)  # (absent from batch's options)
        self.mesh_step = 1 if mesh_step is None else int(mesh_step)
        self.wants_height = any((self.height_path, self.confidence_path, self.mesh_path))
        self.zstack = zstack
        _check_alpha_and_float(args, others[0], zstack)
        self.z_step: float | None = None
        self.pixel_size = zstack.pixel_size if zstack is not None else None
        if self.mesh_step < 1:
            raise UserError(f"--mesh-step must be >= 1; got {self.mesh_step}.")
        z_text = getattr(args, "z_step", None)
        if z_text is not None:
            try:
                self.z_step = parse_length(z_text, "--z-step")
            except ValueError as exc:
                raise UserError(str(exc).replace("`--z-step`", "--z-step")) from None
        elif zstack is not None:
            self.z_step = zstack.z_step
        if (self.height_path or self.mesh_path) and self.z_step is None:
            raise UserError(
                "--height-map and --mesh need the z-step: the input gives none (no OME "
                "PhysicalSizeZ or ImageJ spacing); give --z-step, as --z-step 2.5um."
            )
        taken = [p for p in others if p is not None]
        for path, flag in (
            (self.height_path, "--height-map"),
            (self.confidence_path, "--confidence"),
        ):
            if path is None:
                continue
            _check_output(path, args.force, flag, inputs)
            if path.suffix.lower() not in (".tif", ".tiff"):
                raise UserError(f"{flag} {path}: float32 maps are written to .tif; got {path}.")
            if any(_same_target(path, other) for other in taken):
                raise UserError(f"{flag} must differ from the other output files.")
            taken.append(path)
        if self.mesh_path is not None:
            if self.mesh_path.suffix.lower() != ".ply":
                raise UserError(f"--mesh {self.mesh_path}: the mesh is written as .ply.")
            try:
                _writer.check_target(self.mesh_path, overwrite=args.force, inputs=inputs)
            except _writer.OutputRefusedError as exc:
                raise UserError(f"--mesh {exc}") from None
            if any(_same_target(self.mesh_path, other) for other in taken):
                raise UserError("--mesh must differ from the other output files.")

    def write(self, result: Any, image: NDArray[Any], force: bool, inputs: Any) -> None:
        """Write the height map, confidence and mesh that were asked for."""
        if not self.wants_height:
            return
        from ..stack.mesh import write_ply

        assert result.height is not None and result.height_confidence is not None
        if self.confidence_path is not None:
            _io.write_image(
                self.confidence_path, result.height_confidence, overwrite=force, inputs=inputs
            )
        if self.z_step is None:
            return
        heights = (result.height * np.float32(self.z_step)).astype(np.float32)
        if self.height_path is not None:
            _io.write_image(self.height_path, heights, overwrite=force, inputs=inputs)
        if self.mesh_path is not None:
            if self.pixel_size is None:
                print(
                    "note: the input gives no pixel size; the mesh's x and y are in pixels.",
                    file=sys.stderr,
                )
            write_ply(
                self.mesh_path,
                heights,
                image,
                pixel_size=self.pixel_size or (1.0, 1.0),
                step=self.mesh_step,
                overwrite=force,
                inputs=inputs,
            )


def _check_alpha_and_float(args: argparse.Namespace, output: Path | None, zstack: Any) -> None:
    """--alpha and --float32 need an output format that holds them (before the work)."""
    suffix = output.suffix.lower() if output is not None else ""
    if getattr(args, "float32", False) and suffix not in (".tif", ".tiff"):
        raise UserError(f"--float32 writes a float32 TIFF: give a .tif output; got {output}.")
    if getattr(args, "alpha", False):
        if zstack is not None:
            raise UserError("--alpha keeps the alpha of RGBA frame files, not of a z-stack.")
        if suffix not in (".png", ".tif", ".tiff"):
            raise UserError(
                f"--alpha needs a .png or .tif output (JPEG holds no alpha); got {output}."
            )


def _fuser(args: argparse.Namespace) -> Any:
    """``fuse``, or with --alpha the fusion that keeps the union of the frames' alpha."""
    if getattr(args, "alpha", False):
        from ..stack.alpha import fuse_with_alpha

        return fuse_with_alpha
    return fuse


def _write_output(
    args: argparse.Namespace,
    output: Path,
    image: NDArray[Any],
    zstack: Any,
    metadata: _io.ImageMetadata,
    inputs: _writer.Inputs,
) -> None:
    """The fused image: float32 with --float32, with its alpha with --alpha."""
    if getattr(args, "float32", False) and image.dtype.kind in "ui":
        image = (image / np.float32(np.iinfo(image.dtype).max)).astype(np.float32)
    if getattr(args, "alpha", False):
        from ..stack.alpha import write_with_alpha

        write_with_alpha(output, image, overwrite=args.force, inputs=inputs)
        return
    _write_fused(output, image, zstack, args.force, metadata, inputs)


def _path(text: str | None) -> Path | None:
    return Path(text) if text else None


def _parse_focus_channel(text: str | None, zstack: Any) -> int | list[float] | None:
    """--focus-channel N or W,W,...; a channel index out of the z-stack's range refused."""
    if text is None:
        return None
    try:
        if "," not in text:
            channel = int(text)
            value: int | list[float] = channel
        else:
            value = [float(w) for w in text.split(",")]
    except ValueError:
        raise UserError(
            f"--focus-channel must be a channel index or weights W,W,...; got {text!r}."
        ) from None
    channels = zstack.channels if zstack is not None else None
    if isinstance(value, int):
        if value < 0 or (channels is not None and value >= channels):
            top = f"[0, {channels - 1}]" if channels is not None else ">= 0"
            raise UserError(f"--focus-channel must be a channel index in {top}; got {value}.")
    elif any(not np.isfinite(w) or w < 0 for w in value) or sum(value) <= 0:
        raise UserError(f"--focus-channel weights must be >= 0 with a sum > 0; got {text!r}.")
    elif channels is not None and len(value) != channels:
        raise UserError(
            f"--focus-channel must give one weight for each of the {channels} channels; "
            f"got {len(value)}."
        )
    return value


def _ome_output(output: Path, channels: int, zstack: Any) -> bool:
    """Whether the fused image goes to an OME-TIFF (channel planes, names, pixel sizes):
    a .ome.tif name, a TIFF from an OME z-stack, or a TIFF of other than 1 or 3 channels."""
    name = output.name.lower()
    if not name.endswith((".tif", ".tiff")):
        return False
    from_ome = zstack is not None and zstack.is_ome
    return name.endswith((".ome.tif", ".ome.tiff")) or from_ome or channels not in (1, 3)


def _write_fused(
    output: Path,
    image: NDArray[Any],
    zstack: Any,
    force: bool,
    metadata: _io.ImageMetadata,
    inputs: _writer.Inputs,
) -> None:
    """The fused image: OME-TIFF where :func:`_ome_output` says, else ``write_image``."""
    channels = 1 if image.ndim == 2 else image.shape[-1]
    if not _ome_output(output, channels, zstack):
        if channels not in (1, 3):
            raise UserError(
                f"output {output}: {channels} channels; PNG and JPEG hold grey or RGB, "
                "write them to a .tif."
            )
        _io.write_image(output, image, overwrite=force, metadata=metadata, inputs=inputs)
        return
    from ..stack.zstack import channel_tiff

    data = channel_tiff(
        image,
        channel_names=zstack.channel_names if zstack is not None else (),
        pixel_size=zstack.pixel_size if zstack is not None else None,
    )
    try:
        _writer.write_bytes(output, data, overwrite=force, inputs=inputs)
    except _writer.OutputRefusedError as exc:
        raise UserError(f"output {exc}") from None


def _open_zstack(files: list[Path], index: str | None) -> Any:
    """The z-stack when ``files`` is one multi-page TIFF (a ZStack), else None."""
    from ..stack import zstack

    if not zstack.is_lone_zstack(files):
        if index:
            raise UserError("--index picks planes of one z-stack file; give one TIFF file.")
        return None
    try:
        return zstack.open_zstack(files[0], index=index)
    except (StackError, ValueError) as exc:
        raise UserError(str(exc)) from None


def _read_strokes(path: str, count: int) -> Any:
    """The strokes document of ``--retouch``, checked (but for the image size) before the
    work; the image size is checked once the result is known."""
    from ..viewer import retouch

    try:
        document = retouch.load_strokes(path)
        retouch.parse_strokes(document, None, count)
    except OSError as exc:
        raise UserError(f"--retouch {path}: cannot read it ({exc.strerror or exc}).") from None
    except ValueError as exc:
        raise UserError(f"--retouch {path}: {exc}") from None
    return document


def _keep_frames(
    document: Any, kept: dict[int, NDArray[Any]], then: Callable[[str, NDArray[Any]], None] | None
) -> Callable[[str, NDArray[Any]], None]:
    """An ``on_step`` that keeps the aligned frames the strokes paint from, as the
    16-bit images ``--save-steps`` writes (what ``convstack view`` paints from), and
    passes every step on to ``then``."""
    from ..viewer import retouch

    wanted = {s.frame for s in retouch.parse_strokes(document) if not s.erase}

    def on_step(name: str, array: NDArray[Any]) -> None:
        if name.startswith("aligned_") and int(name[len("aligned_") :]) in wanted:
            kept[int(name[len("aligned_") :])] = _step_image(name, array)
        if then is not None:
            then(name, array)

    return on_step


def _replay(
    document: Any, image: NDArray[Any], kept: dict[int, NDArray[Any]], path: str
) -> NDArray[Any]:
    """The fused image with the strokes of ``--retouch`` applied."""
    from ..viewer import retouch

    try:
        strokes = retouch.parse_strokes(document, image.shape, None)
    except ValueError as exc:
        raise UserError(f"--retouch {path}: {exc}") from None
    return retouch.apply_strokes(image, strokes, kept.__getitem__)


def _same_target(a: Path, b: Path) -> bool:
    """Whether two output paths name one file (also through links)."""
    return _writer.Inputs([b]).match(a) is not None
