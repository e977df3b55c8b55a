//! Benchmark toolkit shipped with sluice: a mock sink (`sluice bench sink`) and a closed-loop
//! load generator (`sluice bench load`) that reports latency, throughput, errors, the proxy's
//! memory and the server-side time breakdown taken from its `/metrics`.

pub mod load;
pub mod sink;
