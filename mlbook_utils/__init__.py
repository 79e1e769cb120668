"""mlbook_utils: the shared, tested code of the interactive book on meta learning.

Importing the package has no side effects: no downloads, no warning filters, and no TensorFlow or
JAX import until something needs it. Import the submodules you use::

    from mlbook_utils import config, data, episodes, evaluation, plots
"""

__version__ = "0.1.0"

__all__ = [
    "baselines", "config", "data", "episodes", "evaluation", "exercises", "nbtools", "plots",
    "widgets",
]
