"""Text-guided attention of a clean image and of its adversarial copy (the paper's first figure).

    python -m tgazsr.visualize --model_name_or_path openai/clip-vit-base-patch32 \
        --image dog.jpg --label dog --class_names "dog,cat,bird,car" --eps 1 --output attention.png

The image is resized and cropped as the benchmark does and attacked by the evaluation harness's
own path (``score_batch``: PGD on the zero-shot cross-entropy over ``--class_names``, L-inf,
pixel space, normalization inside the model); the text-guided attention map ``A(x; t_label)`` of
``tgazsr.attention.text_guided_attention`` is drawn for the clean and the adversarial image.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Sequence

import torch

from ..attention import ATTENTION_NORMS
from ..data.transforms import RESIZE_MODES
from ..limits import setting, with_limits_in_help
from ..modeling import PIXEL_NORMALIZATIONS

logger = logging.getLogger("tgazsr.visualize")


@with_limits_in_help
@dataclass
class VisualizeArguments:
    model_name_or_path: str | None = setting(None, "A model directory (e.g. one tgazsr.train wrote) or Hub id. Required.")
    image: str | None = setting(None, "Path of the image to draw. Required.")
    label: str | None = setting(None, "The image's class name (its prompt guides the attention). Required.")
    class_names: str | None = setting(
        None, "Classes of the zero-shot classifier (comma-separated or a file), at least two; the label must be one of "
        "them. Required.")
    prompt_template: str = setting("This is a photo of a {}", "Prompt, '{}' for the class name.", placeholders=1)
    tokenizer_name_or_path: str | None = setting(None, "Tokenizer location if the model has none.")
    pixel_normalization: str = setting(
        "auto", "'auto' (the checkpoint's image processor), 'clip' or 'imagenet' mean/std.",
        choices=("auto", *sorted(PIXEL_NORMALIZATIONS)))
    resize_mode: str = setting("shorter_side_crop", "'shorter_side_crop' or 'square'.", choices=RESIZE_MODES)
    eps: float = setting(1.0, "PGD budget in units of 1/255 (L-inf).", gt=0, le=255)
    steps: int = setting(100, "PGD steps.", ge=1)
    step_size: float = setting(1.0, "PGD step size in units of 1/255.", gt=0, le=255)
    seed: int = setting(0, "Seed of PGD's random start.", ge=0)
    attention_norm: str = setting("token_axis", "'token_axis' (reference) or 'per_token'.", choices=ATTENTION_NORMS)
    device: str | None = setting(None, "Device (default: cuda if available, else cpu).")
    output: str = setting("attention.png", "PNG file to write.")


def check_visualize_inputs(args: VisualizeArguments) -> list[str]:
    """What can be checked before the model is loaded: the required flags, the image file, the class
    names and the label among them, the output file. Returns the class names."""
    from ..data.loading import read_class_names
    from ..files import check_output_file
    from ..recipes import RecipeError

    missing = [f for f in ("model_name_or_path", "image", "label", "class_names") if not getattr(args, f)]
    if missing:
        raise RecipeError(f"Pass {', '.join('--' + m for m in missing)} (tgazsr visualize --model_name_or_path M "
                          "--image dog.jpg --label dog --class_names dog,cat,bird).")
    image = os.path.expanduser(args.image)
    if not os.path.isfile(image):
        found = "a folder, not an image file" if os.path.isdir(image) else "no such file"
        raise RecipeError(f"--image {args.image}: {found}. Pass the path of an image file (PNG, JPEG, ...).")
    names = check_class_names(read_class_names(args.class_names), args.label)
    check_output_file(args.output)
    return names


def check_class_names(names: Sequence[str] | None, label: str) -> list[str]:
    from ..recipes import RecipeError

    names = list(names or [])
    if len(names) < 2:
        raise RecipeError("Pass --class_names with at least two classes (the label among them): the attack "
                          "maximizes the zero-shot cross-entropy over them.")
    if label not in names:
        raise RecipeError(f"The label {label!r} is not one of the class names {names}: pass --label with one of them, "
                          "or add it to --class_names.")
    return names


def read_image(path: str):
    """The image at ``path``, decoded as every loader decodes (:func:`tgazsr.data.images.open_image_file`);
    a file that is not a readable image is an error naming it."""
    from ..data.images import open_image_file

    return open_image_file(path, where=f"--image {path}")


def attention_pair(model, tokenizer, x: torch.Tensor, label: str, class_names: Sequence[str] | None,
                   template: str, eps: float, steps: int, step_size: float, seed: int = 0,
                   attention_norm: str = "token_axis") -> dict:
    """Clean and adversarial images, their text-guided attention maps and predictions."""
    from ..attacks import PGDSettings
    from ..attention import text_guided_attention
    from .harness import AttackPlan, score_batch
    from .reports import result_key

    names = check_class_names(class_names, label)
    y = torch.tensor([names.index(label)], device=x.device)
    text = model.class_embeddings(names, [template], tokenizer).to(x.device)
    plan = AttackPlan(["pgd"], {"pgd": PGDSettings(steps=steps, step_size=step_size)}, [eps], seed=seed)
    score = score_batch(model, text, x, y, [0], plan, "visualize", len(names), keep_adversarial=True)
    key = result_key("pgd", eps)
    x_adv = score.adversarial[key]
    size = x.shape[-1]
    out = {"x": x, "x_adv": x_adv, "class_names": names, "label": label,
           "clean_pred": names[int(score.clean[0])], "adv_pred": names[int(score.preds[key][0])]}
    for tag, image in (("clean", x), ("adv", x_adv)):
        with torch.no_grad():
            enc = model(image, output_tokens=True)
            out[f"{tag}_map"] = text_guided_attention(enc.tokens, text[y], size, norm=attention_norm,
                                                     prefix=enc.prefix_tokens)[0].view(size, size)
    return out


def draw(pair: dict, output: str, eps: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def rgb(t):
        return t[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy()

    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.6), dpi=120)
    axes[0].imshow(rgb(pair["x"]))
    axes[0].set_title(f"image: {pair['label']}", fontsize=9)
    for ax, tag, image, title in (
        (axes[1], "clean", pair["x"], "clean attention"),
        (axes[2], "adv", pair["x_adv"], f"adversarial attention (eps {eps:g}/255)"),
    ):
        ax.imshow(rgb(image))
        ax.imshow(pair[f"{tag}_map"].cpu().numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=1)
        pred = pair[f"{tag}_pred"]
        ax.set_title(f"{title}\nprediction: {pred}", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(output)
    plt.close(fig)
    return output


def main(argv: Sequence[str] | None = None) -> int:
    from ..data import ImageTransform
    from ..recipes import parse_recipe
    from .arguments import EvalArguments
    from .model import load_model

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    (args,) = parse_recipe((VisualizeArguments,), argv)
    names = check_visualize_inputs(args)
    picture = read_image(args.image)  # before the model: a bad file is found at once
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, tokenizer, _ = load_model(
        EvalArguments(model_name_or_path=args.model_name_or_path, tokenizer_name_or_path=args.tokenizer_name_or_path,
                      pixel_normalization=args.pixel_normalization),
        device,
    )
    transform = ImageTransform(model.clip.config.vision_config.image_size, args.resize_mode)
    x = transform(picture, args.image).unsqueeze(0).to(device)
    pair = attention_pair(model, tokenizer, x, args.label, names, args.prompt_template,
                          args.eps, args.steps, args.step_size, args.seed, args.attention_norm)
    path = draw(pair, args.output, args.eps)
    logger.info("clean prediction %s, adversarial prediction %s; wrote %s", pair["clean_pred"], pair["adv_pred"], path)
    print(path)
    return 0


if __name__ == "__main__":
    from ..errors import run_command

    sys.exit(run_command(main))
