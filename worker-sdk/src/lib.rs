//! gpuq-worker-sdk (under construction).
