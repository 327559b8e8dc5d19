//! `Output` and `Asset`: what a handler returns — images or one video, as uploaded.

use gpuq_worker_sdk as sdk;
use pyo3::prelude::*;

/// One produced file, as uploaded (its path is what `Context.upload` returned).
#[pyclass(frozen, module = "gpuq_worker", from_py_object)]
#[derive(Clone)]
pub(crate) struct Asset {
    #[pyo3(get)]
    path: String,
    #[pyo3(get)]
    seed: Option<u64>,
    #[pyo3(get)]
    width: Option<u32>,
    #[pyo3(get)]
    height: Option<u32>,
    #[pyo3(get)]
    duration_seconds: Option<f64>,
    #[pyo3(get)]
    thumbnail_path: Option<String>,
    /// Free-form metadata, kept as JSON.
    metadata: serde_json::Value,
}

#[pymethods]
impl Asset {
    #[new]
    #[pyo3(signature = (path, *, seed=None, width=None, height=None, duration_seconds=None, thumbnail_path=None, metadata=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: String,
        seed: Option<u64>,
        width: Option<u32>,
        height: Option<u32>,
        duration_seconds: Option<f64>,
        thumbnail_path: Option<String>,
        metadata: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let metadata = match metadata {
            None => serde_json::Value::Null,
            Some(m) => {
                let text: String = py.import("json")?.call_method1("dumps", (m,))?.extract()?;
                serde_json::from_str(&text).map_err(|e| {
                    pyo3::exceptions::PyValueError::new_err(format!("metadata: {e}"))
                })?
            }
        };
        Ok(Self {
            path,
            seed,
            width,
            height,
            duration_seconds,
            thumbnail_path,
            metadata,
        })
    }

    fn __repr__(&self) -> String {
        format!("Asset(path={:?})", self.path)
    }
}

impl From<Asset> for sdk::Asset {
    fn from(a: Asset) -> Self {
        Self {
            path: a.path,
            thumbnail_path: a.thumbnail_path,
            seed: a.seed,
            width: a.width,
            height: a.height,
            duration_seconds: a.duration_seconds,
            metadata: a.metadata,
        }
    }
}

/// What a job produced. Build it with `Output.images([...])` or `Output.video(asset)`.
#[pyclass(frozen, module = "gpuq_worker")]
pub(crate) struct Output {
    inner: sdk::Output,
}

#[pymethods]
impl Output {
    /// Produced images, in order (the position is the image index).
    #[staticmethod]
    #[pyo3(signature = (assets, *, enhanced_prompt=None))]
    fn images(assets: Vec<Asset>, enhanced_prompt: Option<String>) -> Self {
        let out = sdk::Output::images(assets.into_iter().map(Into::into).collect());
        Self::with_prompt(out, enhanced_prompt)
    }

    /// One produced video.
    #[staticmethod]
    #[pyo3(signature = (asset, *, enhanced_prompt=None))]
    fn video(asset: Asset, enhanced_prompt: Option<String>) -> Self {
        Self::with_prompt(sdk::Output::video(asset.into()), enhanced_prompt)
    }

    /// How many files.
    fn __len__(&self) -> usize {
        self.inner.assets.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "Output({:?}, {} asset(s))",
            self.inner.kind,
            self.inner.assets.len()
        )
    }
}

impl Output {
    fn with_prompt(out: sdk::Output, prompt: Option<String>) -> Self {
        Self {
            inner: match prompt {
                Some(p) => out.with_enhanced_prompt(p),
                None => out,
            },
        }
    }

    pub(crate) fn to_sdk(&self) -> sdk::Output {
        self.inner.clone()
    }
}
