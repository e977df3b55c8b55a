//! Benchmark toolkit (mock sink, load generator).
