"""The measurements behind docs/benchmarks.md: speed and quality figures, each with the machine it ran on.

Run from the repository root as modules, e.g. ``python -m benchmarks.bench --quick``:

* :mod:`benchmarks.bench`: the project against the PyTorch tutorial and its peers, one process, one split
  (its rows in :mod:`benchmarks.rows`).
* :mod:`benchmarks.load`: the HTTP server under load (requests/s, p50/p99), with wrk when installed
  (``wrk_predict.lua``, ``wrk_post.lua``) or Python clients.
* :mod:`benchmarks.speed`: prediction as a user meets it: a cold ``names predict`` and a million-name batch.
* :mod:`benchmarks.seeds`: mean and spread of ``names train`` over several seeds.
* :mod:`benchmarks.peers`: the peer recipe (TF-IDF + LinearSVC) scored like ``names evaluate``.
* :mod:`benchmarks.fullnames`: the full-name tasks on the Wikipedia people (name2nat's NaNa, origins
  grouped by surname): split files, TF-IDF + LinearSVC baselines, one scorer for any model.
* :mod:`benchmarks.common`: what they share (free ports, load average, the machine header).

Not installed with the package, and the package never imports it: this is the lab beside the product.
The tests run these modules end to end (``tests/test_bench.py``).
"""
