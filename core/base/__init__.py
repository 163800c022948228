"""What every layer may use: errors with their fix, progress/cancel callables, atomic I/O, paths,
config helpers, torch threads, numba's parallel lock, peak memory, and the one training loop
(epochs, evaluation, early stopping, progress, cancel) of the SAE, the built-in model and the
simulation autoencoders. Imports nothing else of core.
"""

__all__ = ["configs", "errors", "io", "parallel", "paths", "progress", "resources", "threads", "training_loop"]
