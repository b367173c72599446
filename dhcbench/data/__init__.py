"""Package data: the published results, the original split lists and the shipped suites."""
