"""mlbook_utils: the shared, tested code of the interactive book on meta learning.

Importing the package has no side effects: no downloads, no warning filters, and no TensorFlow or
JAX import until something needs it. Import the submodules you use::

    from mlbook_utils import config, data, episodes, evaluation, plots
"""

__version__ = "0.1.0"

__all__ = [
    # plumbing
    "autodiff", "config", "data", "episodes", "evaluation", "exercises", "gradient_preprocessing",
    "models", "nbtools", "plots", "registry", "report", "reproduce", "widgets",
    # methods, one module per method family (registry.METHOD_MODULES lists them in book order)
    "baselines", "learned_optimizer", "lstm_meta_learner", "metric", "protonet_variants",
    "relation_matching", "siamese",
]
