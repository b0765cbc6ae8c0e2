"""Monitoring: the Little's-law capacity planner (:mod:`.capacity`), a reader for the
Prometheus metrics the running services expose (:mod:`.metrics_reader`) and the
measured plan built from them (:mod:`.measure`)."""
