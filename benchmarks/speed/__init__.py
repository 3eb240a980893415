"""The speed benchmark behind ``benchmarks/bench_speed.py``, in small modules.

- :mod:`.timing`: wall-clock stages, peak memory, machine info, load average, progress lines;
- :mod:`.workloads`: photos, pairs, query points, sizes, the SPair-71k workload and its
  extrapolation;
- :mod:`.single_pair`: one pair through :class:`corr.Matcher`, stage by stage, cold cache;
- :mod:`.extraction`: images/s through :meth:`corr.Matcher.extract` (batch size x workers);
- :mod:`.matching`: the two-stage evaluation (extract every image, then match pairs from the
  cache): pairs/s of the cached pair stage, plain and with flip alignment;
- :mod:`.reference`: the reference implementation's way of working;
- :mod:`.interleave`: ours vs the reference in alternating A/B rounds, and the ratio;
- :mod:`.report`: figures, JSON + CSV (rewritten after every stage) and the printed table;
- :mod:`.cli`: options and the order of the stages.
"""
