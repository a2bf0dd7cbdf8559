"""plait's benchmarks: ``python -m bench`` (``make bench``); see BENCHMARKS.md.

One module per measurement, each with ``async measure(sizes) -> (rows, raw)``; ``baselines``
holds the plain-LangGraph workflows, ``model`` the scripted latency model both sides call.
"""
