"""The trusted side of a graded test: the ``impl`` fixture's remote API and its probes, judge-side episodes
and contracts, the pytest plugins of the judge process, and the sandbox engines that start workers."""
