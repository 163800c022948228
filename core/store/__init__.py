"""The analysis folder and what sits around it: the folder itself (``analysis``), what the app can
open (``catalog``), export (``export``) and uploads kept in the data folder (``uploads``).
"""

__all__ = ["analysis", "catalog", "export", "uploads"]
