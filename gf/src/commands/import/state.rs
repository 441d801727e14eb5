//! Where the import of one file into one connection stopped, so a rerun continues there.
//!
//! One small JSON file per (file, connection), rewritten after every acknowledged batch (written
//! beside, then renamed over, so it is never half written). It only ever names lines the broker
//! acknowledged: a crash loses at most the batches acknowledged since the last write, and
//! sending those again is harmless, as insert ids deduplicate downstream.

use std::io;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::source::Position;

const VERSION: u32 = 1;

/// Which file a state is about: a file that changed is another file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileIdentity {
    /// Absolute, symbolic links resolved.
    pub path: String,
    pub size: u64,
    pub modified_ms: i64,
}

impl FileIdentity {
    pub fn of(path: &Path) -> io::Result<FileIdentity> {
        let absolute = std::fs::canonicalize(path)?;
        let metadata = std::fs::metadata(&absolute)?;
        if !metadata.is_file() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a file"));
        }
        let modified_ms = metadata
            .modified()?
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Ok(FileIdentity {
            path: absolute.to_string_lossy().into_owned(),
            size: metadata.len(),
            modified_ms,
        })
    }
}

/// What the broker acknowledged of one file, over every run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub events: u64,
    pub accepted: u64,
    pub dropped: u64,
    pub malformed: u64,
    pub batches: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportState {
    pub version: u32,
    pub connection: Uuid,
    pub file: FileIdentity,
    /// Every line before this was acknowledged, or skipped (blank, malformed).
    pub position: Position,
    /// The zip entry `position.entry` is, for people reading the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_name: Option<String>,
    /// The whole file was imported.
    pub done: bool,
    pub totals: Totals,
    pub updated_at: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the import state {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    #[error("{} is not an import state gf can read ({detail}); delete it or pass --restart", path.display())]
    Unreadable { path: PathBuf, detail: String },
    #[error("cannot write the import state {}: {error} (--state-dir keeps it elsewhere)", path.display())]
    Write { path: PathBuf, error: io::Error },
    #[error("{file} changed since the import {} recorded ({what}); pass --restart to import it from its first line", state.display())]
    Changed {
        file: String,
        state: PathBuf,
        what: String,
    },
}

/// Where a file's import starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    Fresh,
    Resume(Position),
    /// Imported completely before: skipped.
    Finished,
}

/// The state file of `file`'s import into `connection`: beside it, or in `state_dir` (named
/// after the file and a digest of its absolute path, so files of the same name do not meet).
pub fn path_for(file: &FileIdentity, state_dir: Option<&Path>, connection: Uuid) -> PathBuf {
    let path = Path::new(&file.path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "import".into());
    match state_dir {
        None => path.with_file_name(format!("{name}.gf-import-{connection}.json")),
        Some(dir) => {
            let digest = Sha256::digest(file.path.as_bytes());
            let short: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
            dir.join(format!("{name}.{short}.gf-import-{connection}.json"))
        }
    }
}

/// Where to start `file` given what an earlier run left.
pub fn start(
    existing: Option<&ImportState>,
    file: &FileIdentity,
    state_path: &Path,
    restart: bool,
) -> Result<Start, StateError> {
    let Some(state) = existing.filter(|_| !restart) else {
        return Ok(Start::Fresh);
    };
    let was = &state.file;
    let what = if was.path != file.path {
        Some(format!("it was {}", was.path))
    } else if was.size != file.size {
        Some(format!("{} bytes then, {} now", was.size, file.size))
    } else if was.modified_ms != file.modified_ms {
        Some("modified since".to_owned())
    } else {
        None
    };
    if let Some(what) = what {
        return Err(StateError::Changed {
            file: file.path.clone(),
            state: state_path.to_owned(),
            what,
        });
    }
    Ok(if state.done {
        Start::Finished
    } else {
        Start::Resume(state.position)
    })
}

impl ImportState {
    pub fn new(connection: Uuid, file: FileIdentity) -> Self {
        ImportState {
            version: VERSION,
            connection,
            file,
            position: Position::default(),
            entry_name: None,
            done: false,
            totals: Totals::default(),
            updated_at: String::new(),
        }
    }

    /// The state at `path`; `None` when there is none.
    pub fn load(path: &Path) -> Result<Option<ImportState>, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(StateError::Read {
                    path: path.to_owned(),
                    error,
                });
            }
        };
        let unreadable = |detail: String| StateError::Unreadable {
            path: path.to_owned(),
            detail,
        };
        let state: ImportState =
            serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
        if state.version != VERSION {
            return Err(unreadable(format!("version {}", state.version)));
        }
        Ok(Some(state))
    }

    /// Writes the state beside `path` and renames it over: a crash leaves the old or the new.
    pub fn save(&mut self, path: &Path) -> Result<(), StateError> {
        self.updated_at = gf_schemas::time::format(&chrono::Utc::now());
        let write = |error| StateError::Write {
            path: path.to_owned(),
            error,
        };
        let text = serde_json::to_vec_pretty(self).map_err(|e| write(e.into()))?;
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        std::fs::write(&partial, text).map_err(write)?;
        std::fs::rename(&partial, path).map_err(write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::tests::TempFile;

    fn identity() -> FileIdentity {
        FileIdentity {
            path: "/data/export.zip".into(),
            size: 1000,
            modified_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn state_files_sit_beside_the_file_or_in_the_state_dir() {
        let connection = Uuid::from_u128(7);
        assert_eq!(
            path_for(&identity(), None, connection),
            PathBuf::from(format!("/data/export.zip.gf-import-{connection}.json"))
        );
        let elsewhere = path_for(&identity(), Some(Path::new("/state")), connection);
        let other = FileIdentity {
            path: "/other/export.zip".into(),
            ..identity()
        };
        assert!(elsewhere.starts_with("/state"));
        assert_ne!(
            elsewhere,
            path_for(&other, Some(Path::new("/state")), connection),
            "same name, other directory"
        );
        assert_ne!(
            path_for(&identity(), None, connection),
            path_for(&identity(), None, Uuid::from_u128(8)),
            "one state per connection"
        );
    }

    #[test]
    fn a_run_starts_where_the_last_one_stopped_unless_the_file_changed() {
        let here = Path::new("/data/export.zip.gf-import.json");
        let mut state = ImportState::new(Uuid::from_u128(1), identity());
        state.position = Position { entry: 2, line: 40 };
        assert_eq!(start(None, &identity(), here, false).unwrap(), Start::Fresh);
        assert_eq!(
            start(Some(&state), &identity(), here, false).unwrap(),
            Start::Resume(Position { entry: 2, line: 40 })
        );
        assert_eq!(
            start(Some(&state), &identity(), here, true).unwrap(),
            Start::Fresh
        );
        state.done = true;
        assert_eq!(
            start(Some(&state), &identity(), here, false).unwrap(),
            Start::Finished
        );
        assert_eq!(
            start(Some(&state), &identity(), here, true).unwrap(),
            Start::Fresh
        );
        for changed in [
            FileIdentity {
                size: 1001,
                ..identity()
            },
            FileIdentity {
                modified_ms: 1,
                ..identity()
            },
            FileIdentity {
                path: "/moved/export.zip".into(),
                ..identity()
            },
        ] {
            let error = start(Some(&state), &changed, here, false).unwrap_err();
            assert!(error.to_string().contains("--restart"), "{error}");
        }
    }

    #[test]
    fn states_are_saved_and_read_back() {
        let file = TempFile::new("events.jsonl", b"{}\n");
        let identity = FileIdentity::of(&file.0).unwrap();
        assert_eq!(identity.size, 3);
        let path = path_for(&identity, None, Uuid::from_u128(3));
        assert_eq!(ImportState::load(&path).unwrap(), None);
        let mut state = ImportState::new(Uuid::from_u128(3), identity);
        state.position = Position { entry: 0, line: 1 };
        state.totals.events = 1;
        state.save(&path).unwrap();
        assert_eq!(ImportState::load(&path).unwrap(), Some(state.clone()));
        state.done = true;
        state.save(&path).unwrap();
        assert!(ImportState::load(&path).unwrap().unwrap().done);

        std::fs::write(&path, "{\"version\":").unwrap();
        let error = ImportState::load(&path).unwrap_err();
        assert!(error.to_string().contains("--restart"), "{error}");
        assert!(FileIdentity::of(file.0.parent().unwrap()).is_err());
    }
}
