"""Serving the pipeline's models without Spark.

* ``stages``: numpy versions of the Spark ML stages the training job saves (pure);
* ``spark_format``: reads a saved Spark ``PipelineModel`` folder into those stages;
* ``storage``: the folders it reads, local or ``s3://``;
* ``champion``: a model version (one training run: decade + year model), where the
  served one comes from (a run folder or MLflow's ``champion`` alias) and the watcher
  that swaps it without a restart;
* ``inputs``: request payloads and uploaded MSD files → feature rows (pure);
* ``settings``: the service's settings (environment, command line) and its API keys;
* ``security``: API key checks (``X-API-Key``; 401 / 403);
* ``observability``: Prometheus metrics, request ids, the JSON access log;
* ``limits``: body size and body/header deadlines against slow or oversized traffic;
* ``app``: the FastAPI prediction service (``POST /predict``, ``GET /model``,
  ``POST /model/refresh``, ``GET /health/live``, ``GET /health/ready``,
  ``GET /metrics``) and its uvicorn entry point.
"""
