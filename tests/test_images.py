"""The image boundary (tgazsr.data.images): one picture in every mode and file format decodes to
the same RGB values through every loader (image folder, save_to_disk, parquet, webdataset tar);
an unreadable file is an error naming it and its row, or, with skip_unreadable_images, is skipped,
counted and reported."""

from __future__ import annotations

import io
import json
import logging
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from tgazsr.data import prepare_classification_data
from tgazsr.data.images import UnreadableImageError, decode_image, open_image_file, to_rgb
from tgazsr.errors import UserError

SIZE = 32  # the picture's size and the decode size: the square resize keeps every pixel


def gray_picture() -> np.ndarray:
    """8x8 flat blocks of gray levels spanning 0..255 (black and white included)."""
    levels = np.linspace(0, 255, 16).round().astype(np.uint8).reshape(4, 4)
    return np.kron(levels, np.ones((8, 8), dtype=np.uint8))


def color_picture() -> np.ndarray:
    g = gray_picture().astype(np.int32)
    return np.stack([g, 255 - g, (g * 3) % 256], -1).astype(np.uint8)


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def variants() -> list[tuple[str, bytes, np.ndarray]]:
    """(name, file bytes, the RGB values it must decode to) for each encoding of the two pictures."""
    g, c = gray_picture(), color_picture()
    gray_rgb = np.repeat(g[..., None], 3, -1)
    opaque = np.full(g.shape, 255, np.uint8)
    palette = Image.fromarray(c).quantize(colors=16, method=Image.Quantize.MEDIANCUT)
    palette_rgb = np.asarray(palette.convert("RGB"))
    with_transparency = palette.copy()
    with_transparency.info["transparency"] = 0  # the colour of index 0 is kept, its alpha dropped
    return [
        ("gray_8bit_png", encoded(Image.fromarray(g), "PNG"), gray_rgb),
        ("gray_16bit_png", encoded(Image.fromarray(g.astype(np.uint16) * 257), "PNG"), gray_rgb),
        ("gray_32bit_int_tiff", encoded(Image.fromarray(g.astype(np.int32) * 257), "TIFF"), gray_rgb),
        ("gray_float_fraction_tiff", encoded(Image.fromarray(g.astype(np.float32) / 255), "TIFF"), gray_rgb),
        ("gray_float_levels_tiff", encoded(Image.fromarray(g.astype(np.float32)), "TIFF"), gray_rgb),
        ("gray_alpha_png", encoded(Image.fromarray(np.stack([g, opaque], -1), "LA"), "PNG"), gray_rgb),
        ("gray_as_rgb_png", encoded(Image.fromarray(gray_rgb), "PNG"), gray_rgb),
        ("rgb_png", encoded(Image.fromarray(c), "PNG"), c),
        ("rgba_opaque_png", encoded(Image.fromarray(np.dstack([c, opaque]), "RGBA"), "PNG"), c),
        ("cmyk_jpeg", encoded(Image.fromarray(c).convert("CMYK"), "JPEG", quality=100), c),
        ("palette_png", encoded(palette, "PNG"), palette_rgb),
        ("palette_transparent_png", encoded(with_transparency, "PNG"), palette_rgb),
    ]


def test_to_rgb_of_each_mode():
    for name, data, expected in variants():
        image = Image.open(io.BytesIO(data))
        got = np.asarray(to_rgb(image), dtype=np.int32)
        assert got.shape == expected.shape, name
        assert np.abs(got - expected).max() <= 1, (name, image.mode, np.abs(got - expected).max())
    assert Image.open(io.BytesIO(variants()[1][1])).mode == "I;16"  # the 16-bit PNG is read as 16 bits
    g = gray_picture()
    # PIL's own conversion clips 16-bit levels at 255: what tgazsr's conversion exists to avoid
    clipped = np.asarray(Image.fromarray(g.astype(np.uint16) * 257).convert("RGB")).mean() / 255
    assert clipped > 0.9 and abs(np.asarray(to_rgb(Image.fromarray(g.astype(np.uint16) * 257))).mean() / 255
                                 - g.mean() / 255) < 1e-3
    for mode in ("I;16B", "I;16L"):
        raw = (g.astype(">u2" if mode.endswith("B") else "<u2") * 257).tobytes()
        assert np.array_equal(np.asarray(to_rgb(Image.frombytes(mode, (SIZE, SIZE), raw)))[..., 0], g)
    c = color_picture()
    ycbcr = np.asarray(to_rgb(Image.fromarray(c).convert("YCbCr")), dtype=np.int32)
    assert np.abs(ycbcr - c).max() <= 3  # PIL's YCbCr holds the picture to within a few levels
    # transparent pixels keep their colour: alpha is dropped, never composited
    rgba = np.dstack([c, np.zeros(g.shape, np.uint8)])
    assert np.array_equal(np.asarray(to_rgb(Image.fromarray(rgba, "RGBA"))), c)


def test_images_outside_every_range_are_errors_naming_them():
    g = gray_picture()
    with pytest.raises(UnreadableImageError, match="where.png.*outside the 16-bit range"):
        to_rgb(Image.fromarray(g.astype(np.int32) * 1000), "where.png")
    bad = g.astype(np.float32)
    bad[0, 0] = np.nan
    with pytest.raises(UnreadableImageError, match="NaN"):
        to_rgb(Image.fromarray(bad))
    with pytest.raises(UnreadableImageError, match=r"values -1\.\.255"):
        to_rgb(Image.fromarray(np.where(g == 0, -1.0, g.astype(np.float32)).astype(np.float32)))
    with pytest.raises(UserError, match="not an image"):
        to_rgb(np.zeros((4, 4)), "row 3")


def write_variants(root: Path) -> dict[str, str]:
    """Every variant as row i (label i % 2, classes a and b) of an image folder, a parquet file and a
    webdataset tar."""
    import datasets

    items = variants()
    paths = {"folder": str(root / "folder"), "parquet": str(root / "variants.parquet"),
             "webdataset": str(root / "variants.tar")}
    for i, (name, data, _) in enumerate(items):
        ext = {"jpeg": "jpg", "tiff": "tiff"}.get(name.rsplit("_", 1)[1], "png")
        folder = root / "folder" / "ab"[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:02d}_{name}.{ext}").write_bytes(data)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    rows = {"image": [{"bytes": d, "path": f"{n}"} for n, d, _ in items], "label": [i % 2 for i in range(len(items))]}
    datasets.Dataset.from_dict(rows, features=features).to_parquet(paths["parquet"])
    with tarfile.open(paths["webdataset"], "w") as tar:
        for i, (_, data, _) in enumerate(items):
            for ext, payload in (("png", data), ("cls", str(i % 2).encode())):  # decoded by content, not extension
                info = tarfile.TarInfo(f"{i:06d}.{ext}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return paths


@pytest.mark.parametrize("fmt", ["folder", "parquet", "webdataset"])
def test_every_encoding_decodes_alike_through_every_loader(tmp_path, fmt):
    paths = write_variants(tmp_path)
    kwargs = {"label_column": "cls"} if fmt == "webdataset" else {}
    if fmt == "webdataset":
        kwargs["image_column"] = "png"
    data = prepare_classification_data(paths[fmt], "train", SIZE, resize_mode="square", class_names=["a", "b"],
                                       **kwargs)
    items = variants()
    assert len(data) == len(items)
    if fmt == "folder":  # the folder is read class by class: match the rows by file name
        order = sorted(range(len(items)), key=lambda i: ("ab"[i % 2], i))
    else:
        order = list(range(len(items)))
    for row, i in enumerate(order):
        name, _, expected = items[i]
        got = (data.dataset[row]["pixel_values"] * 255).round().to(torch.int32).permute(1, 2, 0).numpy()
        assert np.abs(got - expected.astype(np.int32)).max() <= 1, (fmt, name)


def truncated_jpeg(path: Path) -> None:
    data = encoded(Image.fromarray(color_picture()), "JPEG", quality=90)
    path.write_bytes(data[: len(data) // 2])


def folder_with_bad_files(root: Path) -> Path:
    from conftest import write_image_folder

    write_image_folder(str(root), n=8, class_names=["cat", "dog"])
    (root / "cat" / "0002.png").unlink()
    truncated_jpeg(root / "cat" / "0002.jpg")  # in its place: half a JPEG file
    (root / "dog" / "0005.png").write_bytes(b"not an image at all")
    return root


def test_a_truncated_or_foreign_file_is_an_error_naming_it_and_its_row(tmp_path):
    root = folder_with_bad_files(tmp_path / "f")
    data = prepare_classification_data(str(root), "train", SIZE)
    with pytest.raises(UnreadableImageError) as err:
        [data.dataset[i] for i in range(len(data))]
    message = str(err.value)
    assert "cat/0002.jpg (row 1 of" in message and "cannot be read as an image" in message, message
    assert "--skip_unreadable_images true" in message
    with pytest.raises(UnreadableImageError, match="0005.png.*cannot be read as an image"):
        data.dataset[6]  # dog/0005.png: the third of the four dog rows
    # a parquet row is named by its dataset and row index
    import datasets

    rows = {"image": [{"bytes": encoded(Image.fromarray(color_picture()), "PNG"), "path": None},
                      {"bytes": b"\x89PNG broken", "path": None}], "label": [0, 1]}
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    path = str(tmp_path / "rows.parquet")
    datasets.Dataset.from_dict(rows, features=features).to_parquet(path)
    data = prepare_classification_data(path, "train", SIZE)
    with pytest.raises(UnreadableImageError, match=r"The image of row 1 of .*rows\.parquet cannot be read"):
        data.dataset[1]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_skipping_unreadable_images_is_counted_and_never_silent(tmp_path, caplog):
    root = folder_with_bad_files(tmp_path / "f")
    with caplog.at_level(logging.WARNING):
        data = prepare_classification_data(str(root), "train", SIZE, skip_unreadable_images=True)
    assert len(data) == 6 and data.skipped_images == 2
    assert all(data.dataset[i]["pixel_values"].shape == (3, SIZE, SIZE) for i in range(len(data)))
    lines = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(lines) == 1 and "skipped 2 unreadable image(s) of 8" in lines[0], lines


def test_evaluation_stops_at_an_unreadable_image_or_skips_and_reports_it(eval_world, tmp_path, capsys):
    from test_bad_inputs import eval_argv, eval_fails
    from tgazsr.errors import run_command
    from tgazsr.evaluation import cli

    root = folder_with_bad_files(tmp_path / "pets")
    eval_fails(eval_argv(eval_world, tmp_path, "--datasets", str(root), "--max_samples", "8"), capsys,
               "0002.jpg (row 1 of", "cannot be read as an image", "--skip_unreadable_images true")
    out = tmp_path / "skipping"
    argv = eval_argv(eval_world, tmp_path, "--datasets", str(root), "--max_samples", "8", "--output_dir", str(out),
                     "--skip_unreadable_images", "true")
    assert run_command(cli.main, argv) == 0
    results = json.loads((out / "results.json").read_text())
    (result,) = results["datasets"].values()
    assert result["skipped_images"] == 2 and result["num_samples"] == 6
    assert "## Unreadable images skipped" in (out / "results.md").read_text()
    from tgazsr.hub import build_model_card

    card = str(build_model_card("tga_zsr", "openai/clip-vit-base-patch32", str(root), {}, results=results,
                                skipped_images=3))
    assert "3 unreadable images skipped" in card and "2 unreadable image(s) skipped" in card


def test_a_missing_or_unreadable_file_named_alone(tmp_path):
    with pytest.raises(UnreadableImageError, match="does not exist"):
        open_image_file(str(tmp_path / "nothing.png"))
    truncated_jpeg(tmp_path / "half.jpg")
    with pytest.raises(UnreadableImageError, match="half.jpg cannot be read as an image"):
        open_image_file(str(tmp_path / "half.jpg"))
    with pytest.raises(UnreadableImageError, match="row 7 of toy is empty"):
        decode_image({"bytes": None, "path": None}, "toy", 7)


def test_truncated_images_are_never_accepted_silently():
    """No module of the package sets PIL's LOAD_TRUNCATED_IMAGES (it grays out a file's missing part)."""
    import tgazsr.data  # noqa: F401
    import tgazsr.evaluation  # noqa: F401
    import tgazsr.train  # noqa: F401

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    package = Path(__file__).resolve().parents[1] / "tgazsr"
    setters = [str(p) for p in package.rglob("*.py")
               if "LOAD_TRUNCATED_IMAGES =" in p.read_text(encoding="utf-8")
               or "LOAD_TRUNCATED_IMAGES=" in p.read_text(encoding="utf-8")]
    assert not setters, setters


def test_an_unreadable_image_in_a_loader_worker_keeps_its_message(tmp_path):
    """A worker process's error reaches the command as its own message, not the worker's traceback."""
    from torch.utils.data import DataLoader

    from tgazsr.data import collate

    root = folder_with_bad_files(tmp_path / "f")
    data = prepare_classification_data(str(root), "train", SIZE)
    loader = DataLoader(data.dataset, batch_size=4, collate_fn=collate, num_workers=1)
    with pytest.raises(UnreadableImageError) as err:
        list(loader)
    message = str(err.value)
    assert message.startswith("The image ") and "cat/0002.jpg (row 1 of" in message, message
    assert "Traceback" not in message and "worker" not in message, message
