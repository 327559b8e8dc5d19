//! gpuq-callback (under construction).
