"""diffzoo's benchmark harness (``make bench`` = ``python -m benchmarks.run``); see README "Speed"."""
