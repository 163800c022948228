"""The built-in demo: its simulated dataset with ground truth (``data``), the planted-concept score
(``planted``) and the build of the demo analysis (``build``).
"""

__all__ = ["build", "data", "planted"]
