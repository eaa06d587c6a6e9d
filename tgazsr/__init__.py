"""tgazsr: Text-Guided Attention for Zero-Shot Robustness of CLIP, on the Hugging Face stack."""

__version__ = "0.1.0"
