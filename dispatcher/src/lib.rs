//! gpuq-dispatcher (under construction).
