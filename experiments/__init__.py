"""The studies behind docs/experiments.md, docs/realnames.md, docs/corpora.md and docs/scale.md.

Each answers a question about the models rather than timing them; run from the repository root as
modules, e.g. ``python -m experiments.realnames data/names sets``:

* :mod:`experiments.realnames`: what the real-names options promise (prediction sets, priors,
  full names, "none of these") on the grouped split and on another corpus.
* :mod:`experiments.crosscorpus`: models trained on one corpus scored on another's test names.
* :mod:`experiments.scale_train`: one training process against ``--nproc N``, epoch time and figures.
* :mod:`experiments.scale_predict`: batch prediction of a big table in one process and on a local Dask cluster.

Not installed with the package, and the package never imports it. Shared helpers live in
:mod:`benchmarks.common`.
"""
