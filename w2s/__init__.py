"""w2s: weak-to-strong generalization experiments (Burns et al. 2023)."""

__version__ = "0.1.0"
