"""sweep: label-free hyperparameter selection for self-supervised learning."""
__version__ = "0.1.0"
