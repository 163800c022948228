"""Running jobs beyond one process: the Redis/Celery broker and job-health probe (``jobs``) and the
fork server that starts background-job processes (``fork_server``).
"""

__all__ = ["fork_server", "jobs"]
