"""The benchmark harness behind projects/benchmarks/tools (the lab: not in
the wheel; it imports pcm_plugin, pcm_plugin never imports it)."""
