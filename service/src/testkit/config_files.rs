//! [`ConfigFiles`]: a folder with a `base.yaml` and a `staging.yaml`, for tests of the
//! configuration layers.

use std::path::PathBuf;

/// A temporary configuration folder, removed on drop.
pub struct ConfigFiles(PathBuf);

impl ConfigFiles {
    /// Writes `base` as `base.yaml` and `staging` as `staging.yaml`.
    pub fn new(base: &str, staging: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("gpuq-config-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("base.yaml"), base).expect("base.yaml");
        std::fs::write(dir.join("staging.yaml"), staging).expect("staging.yaml");
        Self(dir)
    }

    /// The path of `base.yaml`, for `GPUQ_CONFIG` (then `GPUQ_ENVIRONMENT=staging`).
    pub fn base(&self) -> String {
        self.0.join("base.yaml").display().to_string()
    }
}

impl Drop for ConfigFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
