"""Load and queue-scale benchmarks of the hotline against a real server process.

`scripts/bench` (or `python -m bench`) runs them all and writes bench/results/*.json and
bench/RESULTS.md. See bench/__main__.py for the options.
"""
