"""Noisy-neighbour interference (IBS-style): victims, stressors, parsers and the degradation figure.

Not leakage: leakage asks what a sandbox can *see* of its host; interference asks how much one
sandbox's noise *hurts* its neighbour. The ``interference`` workload runs the pairs.

A *victim* is a steady benchmark with a throughput and, where the tool gives one, a p99 latency. A
*stressor* is one stress-ng (or sync) aggressor, always bounded by ``--timeout`` and sized from the
sandbox's own limits. The degradation D of a victim next to a stressor is defined in
:mod:`isobench.interference.parsers` (positive: worse).
"""
