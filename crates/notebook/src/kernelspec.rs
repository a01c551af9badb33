//! Kernelspecs, found where Jupyter looks for them (`jupyter --paths`, data section):
//! `$JUPYTER_PATH` entries, the user data directory (`$JUPYTER_DATA_DIR`, else
//! `$XDG_DATA_HOME/jupyter` or `~/.local/share/jupyter`), the environment's prefix
//! (`$VIRTUAL_ENV`, `$CONDA_PREFIX`, and the prefix of the `python3` on `PATH`, standing in for
//! Jupyter's `sys.prefix`), then `/usr/local/share/jupyter` and `/usr/share/jupyter`; each
//! contributes its `kernels/<name>/kernel.json`, the first directory holding a name wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{Error, Result};

/// One kernel's spec (`kernel.json`).
#[derive(Debug, Clone)]
pub struct KernelSpec {
    pub name: String,
    /// The directory holding `kernel.json` (`{resource_dir}` in argv).
    pub resource_dir: PathBuf,
    pub argv: Vec<String>,
    pub display_name: String,
    pub language: String,
    /// `signal` (SIGINT to the kernel's process group) or `message` (`interrupt_request`).
    pub interrupt_mode: InterruptMode,
    pub env: BTreeMap<String, String>,
    /// The environment prefix the spec was found in (`<prefix>/share/jupyter/kernels/...`),
    /// whose `bin/python` replaces a bare `python` in argv, as jupyter_client does with
    /// `sys.executable`.
    pub prefix: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterruptMode {
    Signal,
    Message,
}

/// The directories searched for `kernels/`, in Jupyter's order.
/// `extra_prefixes` are environments searched like `$VIRTUAL_ENV` (before it).
pub fn jupyter_data_dirs(extra_prefixes: &[PathBuf]) -> Vec<(PathBuf, Option<PathBuf>)> {
    let mut dirs: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
    if let Some(paths) = std::env::var_os("JUPYTER_PATH") {
        for p in std::env::split_paths(&paths) {
            if !p.as_os_str().is_empty() {
                dirs.push((p, None));
            }
        }
    }
    if let Some(d) = std::env::var_os("JUPYTER_DATA_DIR") {
        dirs.push((PathBuf::from(d), None));
    } else if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        dirs.push((PathBuf::from(x).join("jupyter"), None));
    } else if let Some(home) = std::env::var_os("HOME") {
        dirs.push((PathBuf::from(home).join(".local/share/jupyter"), None));
    }
    let mut prefixes: Vec<PathBuf> = extra_prefixes.to_vec();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            prefixes.push(PathBuf::from(p));
        }
    }
    if let Some(prefix) = python_on_path_prefix() {
        prefixes.push(prefix);
    }
    for prefix in prefixes {
        let dir = prefix.join("share/jupyter");
        if !dirs.iter().any(|(d, _)| *d == dir) {
            dirs.push((dir, Some(prefix)));
        }
    }
    for system in ["/usr/local/share/jupyter", "/usr/share/jupyter"] {
        let dir = PathBuf::from(system);
        if !dirs.iter().any(|(d, _)| *d == dir) {
            let prefix = dir.parent().and_then(Path::parent).map(Path::to_path_buf);
            dirs.push((dir, prefix));
        }
    }
    dirs
}

/// `<prefix>` of the first `python3` (or `python`) on PATH, as `<prefix>/bin/python3`
/// (not following symlinks: a venv's python is a link to the base interpreter).
fn python_on_path_prefix() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for exe in ["python3", "python"] {
            if dir.join(exe).is_file() {
                return dir.parent().map(Path::to_path_buf);
            }
        }
    }
    None
}

/// Every kernelspec by name (the first directory holding a name wins).
pub fn find_kernel_specs(extra_prefixes: &[PathBuf]) -> BTreeMap<String, KernelSpec> {
    let mut specs = BTreeMap::new();
    for (dir, prefix) in jupyter_data_dirs(extra_prefixes) {
        let Ok(entries) = std::fs::read_dir(dir.join("kernels")) else {
            continue;
        };
        let mut names: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        for resource_dir in names {
            let Some(name) = resource_dir.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let name = name.to_lowercase();
            if specs.contains_key(&name) {
                continue;
            }
            match load_spec(&name, &resource_dir, prefix.as_deref()) {
                Ok(Some(spec)) => {
                    specs.insert(name, spec);
                }
                Ok(None) => {}
                Err(why) => tracing::warn!("skipping kernelspec {}: {why}", resource_dir.display()),
            }
        }
    }
    specs
}

/// The kernelspec called `name`; an unknown name lists the available ones.
pub fn find_kernel_spec(name: &str, extra_prefixes: &[PathBuf]) -> Result<KernelSpec> {
    let mut specs = find_kernel_specs(extra_prefixes);
    specs
        .remove(&name.to_lowercase())
        .ok_or_else(|| Error::UnknownKernel {
            name: name.to_owned(),
            available: specs.keys().cloned().collect(),
        })
}

fn load_spec(
    name: &str,
    resource_dir: &Path,
    prefix: Option<&Path>,
) -> std::result::Result<Option<KernelSpec>, String> {
    let file = resource_dir.join("kernel.json");
    let text = match std::fs::read(&file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let json: Value = serde_json::from_slice(&text).map_err(|e| format!("kernel.json: {e}"))?;
    let argv: Vec<String> = json
        .get("argv")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_owned)).collect())
        .filter(|a: &Vec<String>| !a.is_empty())
        .ok_or("kernel.json: `argv` is not a non-empty list of strings")?;
    let text_field = |key: &str| {
        json.get(key)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let interrupt_mode = match json.get("interrupt_mode").and_then(Value::as_str) {
        Some("message") => InterruptMode::Message,
        _ => InterruptMode::Signal,
    };
    let env = json
        .get("env")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(KernelSpec {
        name: name.to_owned(),
        resource_dir: resource_dir.to_path_buf(),
        argv,
        display_name: text_field("display_name"),
        language: text_field("language"),
        interrupt_mode,
        env,
        prefix: prefix.map(Path::to_path_buf),
    }))
}

impl KernelSpec {
    /// The command line: `{connection_file}` and `{resource_dir}` substituted, a bare `python`
    /// (`python3`, `python3.X`) resolved to the spec's environment's interpreter when it has one.
    pub fn command(&self, connection_file: &Path) -> Vec<String> {
        let mut argv: Vec<String> = self
            .argv
            .iter()
            .map(|a| {
                a.replace("{connection_file}", &connection_file.to_string_lossy())
                    .replace("{resource_dir}", &self.resource_dir.to_string_lossy())
            })
            .collect();
        let bare_python = argv[0] == "python"
            || argv[0] == "python3"
            || argv[0]
                .strip_prefix("python3.")
                .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit()));
        if bare_python && let Some(prefix) = &self.prefix {
            let candidate = prefix.join("bin").join(&argv[0]);
            let fallback = prefix.join("bin/python");
            if candidate.is_file() {
                argv[0] = candidate.to_string_lossy().into_owned();
            } else if fallback.is_file() {
                argv[0] = fallback.to_string_lossy().into_owned();
            }
        }
        argv
    }
}
