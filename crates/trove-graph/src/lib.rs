//! trove-graph
