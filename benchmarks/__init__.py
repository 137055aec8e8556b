"""
tether's benchmarks: ratios measured side by side in one run.

Run ``python -m benchmarks [--json] [--quick] [names...]``; see ``__main__.py``.
"""
