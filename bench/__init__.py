"""Side-by-side benchmarks: Hearth and its peers on the same model, in one run."""
