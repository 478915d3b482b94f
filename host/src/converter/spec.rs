//! The one way a converter is loaded: from its configuration (`plugin.*`) to a compiled,
//! checked component with its settings and limits. `run`, `convert`, `check`, `dlq` and the
//! reloader all go through [`ConverterSpec::load`], so they cannot disagree on what the
//! configuration means.

use super::bindings::Table;
use super::conversion::Converter;
use super::error::ConverterError;
use super::runtime::{ConverterComponent, Runtime};
use super::sandbox::ConverterLimits;
use crate::config::{ConverterConfig, WriteMode};

/// Everything a pipeline needs to build its converter.
#[derive(Clone)]
pub struct ConverterSpec {
    /// The compiled component.
    pub component: ConverterComponent,
    /// Handed to the converter's `configure`, in order.
    pub settings: Vec<(String, String)>,
    /// The sandbox each instance runs in.
    pub limits: ConverterLimits,
    /// Counts hot-reload swaps: 0 for the converter the sink started with.
    pub version: u64,
    /// How the sink applies rows, per table (what a row's operation may be).
    pub write_modes: Vec<WriteMode>,
}

impl ConverterSpec {
    /// The converter `config` names (its file, or the bundled one), compiled by a new
    /// runtime that enforces time limits if `config` sets one.
    pub fn load(config: &ConverterConfig) -> Result<Self, ConverterError> {
        let runtime = Runtime::new(config.timeout.is_some())?;
        Self::load_with(&runtime, config, 0)
    }

    /// The converter `config` names, compiled by `runtime`, as hot-reload version `version`.
    pub fn load_with(
        runtime: &Runtime,
        config: &ConverterConfig,
        version: u64,
    ) -> Result<Self, ConverterError> {
        let component = match &config.path {
            Some(path) => {
                let bytes = std::fs::read(path).map_err(|error| ConverterError::Read {
                    path: path.clone(),
                    error,
                })?;
                runtime.load(&bytes, &path.display().to_string())?
            }
            None => runtime.bundled()?,
        };
        Ok(ConverterSpec {
            component,
            settings: config.settings.clone(),
            limits: ConverterLimits::from(config),
            version,
            write_modes: config.write_modes.clone(),
        })
    }

    /// A configured instance of this converter for `tables`.
    pub fn instantiate(&self, tables: &[Table]) -> Result<Converter, ConverterError> {
        Ok(Converter::new(
            self.component.clone(),
            self.settings.clone(),
            tables.to_vec(),
            self.limits,
        )?
        .keyed(self.write_modes.iter().map(|m| m.is_keyed()).collect()))
    }
}
