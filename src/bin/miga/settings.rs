//! Settings of a command: the defaults, or a TOML file laid over them, or `--print-config`.

use std::path::Path;

use miga::Error;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The settings to run with; `None` when `print` asked for the defaults (printed as TOML).
pub fn load<T: Default + Serialize + DeserializeOwned>(
    file: Option<&Path>,
    print: bool,
) -> Result<Option<T>, Error> {
    if print {
        print!("{}", toml::to_string(&T::default()).unwrap_or_default());
        return Ok(None);
    }
    Ok(Some(match file {
        Some(path) => miga::tasks::config::read_toml(&T::default(), path)?,
        None => T::default(),
    }))
}
