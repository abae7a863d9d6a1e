"""Managed cloud endpoints (SageMaker, Vertex AI, Azure ML) from the same model repository.

- ``facts``: each cloud's serving contract (ports, routes, payload limits, /dev/shm), with sources.
- ``selection``: the models one ensemble needs, staged as a repository of their own.
- ``shm``: the Python backend's shared-memory plan for a fixed ``/dev/shm``.
- ``sagemaker`` / ``vertex`` / ``azureml``: what each cloud is given (environment, arguments,
  request bodies, YAML), built as plain data.
- ``frontends``: the real ``tritonserver`` started exactly as each cloud starts it.
- ``contract``: request bodies and calls over each cloud's contract (JSON and binary).
- ``package``: writes the artefacts and the commands to run; ``validate``: checks them offline
  with each cloud's own SDK; ``deploy``: SageMaker end to end through boto3.
- ``pricing``: $/hour, $/month and $ per million requests from measured capacity.
"""
