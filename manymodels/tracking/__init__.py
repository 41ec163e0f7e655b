"""What the driver says to MLflow; the only code besides :mod:`manymodels.artifacts` that
imports MLflow or calls its client.

* :mod:`~manymodels.tracking.store`: where the store is, the client on it, the experiment;
* :mod:`~manymodels.tracking.schema_cache`: new SQLite stores start from a cached schema;
* :mod:`~manymodels.tracking.runs`: a job's run: opened, resumed, claimed, finished;
* :mod:`~manymodels.tracking.run_logs`: parameters, metrics and tables logged on a run;
* :mod:`~manymodels.tracking.registry`: the registry facade over two backends,
  :mod:`~manymodels.tracking.registry_client` (MLflow's client API) and
  :mod:`~manymodels.tracking.registry_bulk` (one transaction per batch), the latter chosen by
  :mod:`~manymodels.tracking.registry_bulk_guard`;
* :mod:`~manymodels.tracking.registry_types`: versions, models and registrations;
* :mod:`~manymodels.tracking.aliases`: the aliases, and who gets ``champion``;
* :mod:`~manymodels.tracking.retries`: retrying a registry write.
"""
