"""Fitting from data in partitions (a Dask DataFrame); see docs/dask.md.

* :mod:`~statsmodels_lmer.distributed.design`: patsy designs learned from
  partition summaries, and designs that pickle;
* :mod:`~statsmodels_lmer.distributed.partition`: what each partition computes
  (complete rows, model arrays, the engine's additive sums);
* :mod:`~statsmodels_lmer.distributed.dask_fit`: the passes on Dask, the lazy
  row-level results and exact quantiles.

Dask is imported only when a Dask DataFrame is given.
"""
