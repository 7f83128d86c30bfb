//! The tasks component: what runs crewai's tasks, starting with the dispatch
//! core of its Flow runtime (the agent executor that runs every task is a Flow).

pub mod flow_graph;
pub mod worker_pool;
