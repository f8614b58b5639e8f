"""galaxy-morphology: classify SDSS galaxies as elliptical or spiral from catalogue features.

Layers, lowest first; a layer imports only the layers below it (``tests/test_layers.py``):

- ``core``: pure logic (settings, schema, cleaning, features, model families, metrics, gate)
- ``io``: the edges (tables on disk, SkyServer, MLflow tracking and the model registry)
- ``monitoring`` and ``serving``: batch monitoring and the scoring server
- ``tasks``: Prefect tasks, ``flows``: Prefect flows that only wire tasks
- ``cli``: the ``galaxy`` command
"""

__version__ = "0.1.0"
