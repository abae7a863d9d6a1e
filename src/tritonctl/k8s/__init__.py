"""Kubernetes: render and install the Helm chart, plan its replicas, report a release's status.

Nothing here needs a cluster except ``deploy`` (without ``--dry-run``) and ``status``.
"""
