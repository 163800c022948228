"""What every layer may use: errors with their fix, progress/cancel callables, atomic I/O, paths,
config helpers, torch threads, numba"s parallel lock, peak memory. Imports nothing else of core.
"""

__all__ = ["configs", "errors", "io", "parallel", "paths", "progress", "resources", "threads"]
