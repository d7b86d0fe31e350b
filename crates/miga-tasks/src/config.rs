//! Settings files: TOML over the defaults, so that a file names only what it changes (nested
//! tables included, e.g. `[fusion]` with just `d_model`).

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result};

/// Settings renamed since earlier builds, (old, new): a file (or a run's recorded settings)
/// with the old name still loads, under the new one.
const RENAMED: [(&str, &str); 1] = [("centre_video", "transductive_centring")];

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(base), toml::Value::Table(over)) => {
            for (key, value) in over {
                let key = match RENAMED.iter().find(|(old, _)| *old == key) {
                    Some((_, new)) if base.contains_key(*new) => new.to_string(),
                    _ => key,
                };
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// `text` (TOML) laid over `defaults`; unknown keys and wrong types are errors naming `path`.
pub fn from_toml<T: Serialize + DeserializeOwned>(
    defaults: &T,
    text: &str,
    path: &Path,
) -> Result<T> {
    let invalid = |reason: String| Error::InvalidConfig {
        path: path.to_path_buf(),
        reason,
    };
    let mut base = toml::Value::try_from(defaults).map_err(|e| invalid(e.to_string()))?;
    let over: toml::Value = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
    merge(&mut base, over);
    base.try_into()
        .map_err(|e: toml::de::Error| invalid(e.to_string()))
}

/// Reads a settings file over `defaults`.
pub fn read_toml<T: Serialize + DeserializeOwned>(defaults: &T, path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    from_toml(defaults, &text, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::micro_gesture::TrainConfig;

    #[test]
    fn files_change_only_what_they_name() {
        let path = Path::new("train.toml");
        let config: TrainConfig = from_toml(
            &<TrainConfig>::default(),
            "epochs = 3\n[fusion]\nd_model = 64\n",
            path,
        )
        .unwrap();
        assert_eq!(
            (config.epochs, config.fusion.d_model, config.fusion.heads),
            (3, 64, 8)
        );
        let message = from_toml(&<TrainConfig>::default(), "epoch = 3\n", path)
            .err()
            .unwrap()
            .to_string();
        assert!(
            message.contains("train.toml") && message.contains("epoch"),
            "{message}"
        );
        assert!(from_toml(&<TrainConfig>::default(), "epochs = \"x\"\n", path).is_err());
    }

    #[test]
    fn renamed_settings_still_load() {
        let config: TrainConfig = from_toml(
            &<TrainConfig>::default(),
            "centre_video = true\n",
            Path::new("run.json"),
        )
        .unwrap();
        assert!(config.transductive_centring);
    }
}
