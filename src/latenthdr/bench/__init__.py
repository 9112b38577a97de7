"""Benchmarks: the paper's evaluations rebuilt on data we hold (DESIGN.md "Evaluation")."""
