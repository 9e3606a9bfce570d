"""Network-namespace testbeds for tests, demos and benchmarks."""
