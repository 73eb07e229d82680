"""Speed benchmarks (`make bench`): measured figures live here, never in timed tests."""
