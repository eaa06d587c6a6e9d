"""The papers tgazsr cites, in one place: the methods' (``tgazsr.methods``) and the published
models' of the conversion zoo (``tgazsr/convert/zoo.yaml`` names them by their key in
:data:`PAPERS`). Titles, authors, venues and links as published."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Paper:
    title: str
    authors: str
    venue: str
    url: str
    bibtex: str = ""

    def cite(self) -> str:
        """``Surname et al., Title (Venue), URL``: one line for tables and messages."""
        names = [a.strip() for a in self.authors.split(",") if a.strip()]
        surname = names[0].split()[-1] if names else ""
        who = f"{surname} et al." if len(names) > 2 else " and ".join(n.split()[-1] for n in names)
        return f"{who}, {self.title} ({self.venue}), {self.url}"

TGA_ZSR = Paper(
    title="Text-Guided Attention is All You Need for Zero-Shot Robustness in Vision-Language Models",
    authors="Lu Yu, Haiyang Zhang, Changsheng Xu",
    venue="NeurIPS 2024",
    url="https://arxiv.org/abs/2410.21802",
    bibtex="""@inproceedings{yu2024tgazsr,
  title     = {Text-Guided Attention is All You Need for Zero-Shot Robustness in Vision-Language Models},
  author    = {Yu, Lu and Zhang, Haiyang and Xu, Changsheng},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2024}
}""",
)

COMP_TGA = Paper(
    title="Complementary Text-Guided Attention for Zero-Shot Adversarial Robustness",
    authors="Lu Yu, Haiyang Zhang, Changsheng Xu",
    venue="IEEE TPAMI 2026",
    url="https://arxiv.org/abs/2603.18598",
    bibtex="""@article{yu2026comptga,
  title   = {Complementary Text-Guided Attention for Zero-Shot Adversarial Robustness},
  author  = {Yu, Lu and Zhang, Haiyang and Xu, Changsheng},
  journal = {arXiv preprint arXiv:2603.18598},
  year    = {2026}
}""",
)

TECOA = Paper(
    title="Understanding Zero-Shot Adversarial Robustness for Large-Scale Models",
    authors="Chengzhi Mao, Scott Geng, Junfeng Yang, Xin Wang, Carl Vondrick",
    venue="ICLR 2023",
    url="https://arxiv.org/abs/2212.07016",
    bibtex="""@inproceedings{mao2023tecoa,
  title     = {Understanding Zero-Shot Adversarial Robustness for Large-Scale Models},
  author    = {Mao, Chengzhi and Geng, Scott and Yang, Junfeng and Wang, Xin and Vondrick, Carl},
  booktitle = {International Conference on Learning Representations (ICLR)},
  year      = {2023}
}""",
)

PMG_AFT = Paper(
    title="Pre-trained Model Guided Fine-Tuning for Zero-Shot Adversarial Robustness",
    authors="Sibo Wang, Jie Zhang, Zheng Yuan, Shiguang Shan",
    venue="CVPR 2024",
    url="https://arxiv.org/abs/2401.04350",
    bibtex="""@inproceedings{wang2024pmgaft,
  title     = {Pre-trained Model Guided Fine-Tuning for Zero-Shot Adversarial Robustness},
  author    = {Wang, Sibo and Zhang, Jie and Yuan, Zheng and Shan, Shiguang},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2024}
}""",
)

FARE = Paper(
    title="Robust CLIP: Unsupervised Adversarial Fine-Tuning of Vision Embeddings for Robust Large "
    "Vision-Language Models",
    authors="Christian Schlarmann, Naman Deep Singh, Francesco Croce, Matthias Hein",
    venue="ICML 2024",
    url="https://arxiv.org/abs/2402.12336",
    bibtex="""@inproceedings{schlarmann2024fare,
  title     = {Robust {CLIP}: Unsupervised Adversarial Fine-Tuning of Vision Embeddings for Robust Large Vision-Language Models},
  author    = {Schlarmann, Christian and Singh, Naman Deep and Croce, Francesco and Hein, Matthias},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2024}
}""",
)

AGFT = Paper(
    title="AGFT: Alignment-Guided Fine-Tuning for Zero-Shot Adversarial Robustness of Vision-Language Models",
    authors="Yubo Cui, Xianchao Guan, Zijun Xiong, Zheng Zhang",
    venue="CVPR 2026",
    url="https://arxiv.org/abs/2603.29410",
    bibtex="""@inproceedings{cui2026agft,
  title     = {{AGFT}: Alignment-Guided Fine-Tuning for Zero-Shot Adversarial Robustness of Vision-Language Models},
  author    = {Cui, Yubo and Guan, Xianchao and Xiong, Zijun and Zhang, Zheng},
  booktitle = {IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2026}
}""",
)

PERCEPTUAL_METRICS = Paper(
    title="Adversarially Robust CLIP Models Can Induce Better (Robust) Perceptual Metrics",
    authors="Francesco Croce, Christian Schlarmann, Naman Deep Singh, Matthias Hein",
    venue="SaTML 2025",
    url="https://arxiv.org/abs/2502.11725",
    bibtex="""@inproceedings{croce2025perceptual,
  title     = {Adversarially Robust {CLIP} Models Can Induce Better (Robust) Perceptual Metrics},
  author    = {Croce, Francesco and Schlarmann, Christian and Singh, Naman Deep and Hein, Matthias},
  booktitle = {IEEE Conference on Secure and Trustworthy Machine Learning (SaTML)},
  year      = {2025}
}""",
)

#: Every paper above by its constant's name (the names zoo.yaml uses).
PAPERS: dict[str, Paper] = {
    "TGA_ZSR": TGA_ZSR, "COMP_TGA": COMP_TGA, "TECOA": TECOA, "PMG_AFT": PMG_AFT, "FARE": FARE, "AGFT": AGFT,
    "PERCEPTUAL_METRICS": PERCEPTUAL_METRICS,
}
