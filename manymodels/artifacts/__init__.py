"""The saved-model formats: what workers write and what loaders read.

* :mod:`~manymodels.artifacts.model_files`: the ``MLmodel`` and environment files of a model
  folder, made once per job;
* :mod:`~manymodels.artifacts.entity_folder`: one entity's MLflow pyfunc model folder;
* :mod:`~manymodels.artifacts.bundle`: the job bundle of ``per_job`` registration (its layout,
  shards and manifest);
* :mod:`~manymodels.artifacts.sinks`: where a task puts the models it trains;
* :mod:`~manymodels.artifacts.loader`: loading models back by location;
* :mod:`~manymodels.artifacts.locations`: local paths of artifact URIs, downloads and uploads.

Workers use this package without importing MLflow unless the artifact store is remote.
"""
