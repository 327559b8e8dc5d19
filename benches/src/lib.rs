//! gpuq-benches (under construction).
