//! Scanning the repository, loading versions and keeping them current.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use mofang_backend::{Backends, LoadOptions};
use mofang_metrics::ServingMetrics;
use parking_lot::RwLock;

use crate::config::{CONFIG_FILE, ModelConfig, PipelineConfig};
use crate::servable::{Parts, Servable};
use crate::{Error, Result, ServableRequest, VersionSelector};

/// Where models come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `<root>/<model>/<version>/…`: every sub-directory is a model.
    Repository(PathBuf),
    /// TF Serving's `--model_name` / `--model_base_path`: one model, `<base>/<version>/…`.
    Single { name: String, base_path: PathBuf },
}

#[derive(Debug, Clone)]
pub struct ManagerOptions {
    pub source: Source,
    /// How often to rescan; `None` loads once and never rescans.
    pub poll_interval: Option<Duration>,
    pub backends: Backends,
    /// Where versions record their batch and state metrics.
    pub metrics: ServingMetrics,
}

/// Lifecycle of one version, named as TF Serving's `ModelVersionStatus.State`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    Loading,
    Available,
    /// Not serving: it failed to load (see the error).
    End,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStatus {
    pub version: u64,
    pub state: VersionState,
    /// Why the version is not available.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelStatus {
    pub name: String,
    pub versions: Vec<VersionStatus>,
}

/// Loads and serves the models of a [`Source`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Manager {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    options: ManagerOptions,
    models: RwLock<BTreeMap<String, ModelEntry>>,
    /// (model, version) label sets currently in the state gauge.
    published: parking_lot::Mutex<Vec<(String, String)>>,
}

#[derive(Debug)]
struct ModelEntry {
    config_text: Option<String>,
    config: std::result::Result<Arc<ModelConfig>, String>,
    versions: BTreeMap<u64, Slot>,
    /// The versions the policy selects from those on disk.
    wanted: Vec<u64>,
}

#[derive(Debug)]
struct Slot {
    stamp: FileStamp,
    /// The config the current state was produced with (a config edit reloads).
    config_text: Option<String>,
    state: SlotState,
}

#[derive(Debug, Clone)]
enum SlotState {
    Loading,
    Ready(Arc<Servable>),
    Failed(String),
}

/// Identifies the content of a model file well enough to notice a replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
}

/// What one scan found for one model.
#[derive(Debug)]
struct ModelOnDisk {
    name: String,
    dir: PathBuf,
    config_text: Option<String>,
    config: std::result::Result<Arc<ModelConfig>, String>,
    /// Version number → (version directory, model file stamp or why it is unusable).
    versions: BTreeMap<u64, (PathBuf, std::result::Result<FileStamp, String>)>,
}

struct LoadJob {
    model: String,
    version: u64,
    dir: PathBuf,
    model_dir: PathBuf,
    stamp: FileStamp,
    config_text: Option<String>,
    config: Arc<ModelConfig>,
}

impl Manager {
    /// Scans and loads everything once, then (with a poll interval) keeps polling in the
    /// background for as long as the manager lives.
    pub async fn start(options: ManagerOptions) -> Result<Manager> {
        match &options.source {
            Source::Repository(root)
            | Source::Single {
                base_path: root, ..
            } => {
                if !root.is_dir() {
                    return Err(Error::Io(format!(
                        "model repository {} is not a directory",
                        root.display()
                    )));
                }
            }
        }
        let manager = Manager {
            inner: Arc::new(Inner {
                options,
                models: RwLock::new(BTreeMap::new()),
                published: parking_lot::Mutex::new(Vec::new()),
            }),
        };
        manager.poll().await;
        if let Some(interval) = manager.inner.options.poll_interval {
            let weak = Arc::downgrade(&manager.inner);
            tokio::spawn(poll_loop(weak, interval));
        }
        Ok(manager)
    }

    /// Rescans the source and applies the differences; returns when every load has finished.
    pub async fn poll(&self) {
        let source = self.inner.options.source.clone();
        let scanned = match tokio::task::spawn_blocking(move || scan(&source)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!("cannot scan the model repository: {e}");
                return;
            }
            Err(e) => {
                tracing::error!("repository scan task failed: {e}");
                return;
            }
        };
        let jobs = self.apply_scan(scanned);
        self.publish_states();
        for job in jobs {
            let backends = self.inner.options.backends.clone();
            let metrics = self.inner.options.metrics.clone();
            let (model, version, stamp, config_text) = (
                job.model.clone(),
                job.version,
                job.stamp.clone(),
                job.config_text.clone(),
            );
            let state = match tokio::task::spawn_blocking(move || load(&backends, &metrics, job))
                .await
            {
                Ok(Ok(servable)) => {
                    tracing::info!(
                        model = %servable.name,
                        version = servable.version,
                        backend = %servable.backend,
                        "model version available"
                    );
                    SlotState::Ready(Arc::new(servable))
                }
                Ok(Err(e)) => {
                    tracing::error!(model = %model, version, "model version failed to load: {e}");
                    SlotState::Failed(e.to_string())
                }
                Err(e) => SlotState::Failed(format!("load task failed: {e}")),
            };
            let mut models = self.inner.models.write();
            // The version may have been removed while it loaded; then drop the result.
            if let Some(slot) = models
                .get_mut(&model)
                .and_then(|m| m.versions.get_mut(&version))
            {
                slot.stamp = stamp;
                slot.config_text = config_text;
                let keep_old = matches!(
                    (&slot.state, &state),
                    (SlotState::Ready(_), SlotState::Failed(_))
                );
                if keep_old {
                    tracing::warn!(model = %model, version, "keeping the previous load of this version");
                } else {
                    slot.state = state;
                }
            }
            if let Some(entry) = models.get_mut(&model) {
                retire(&model, entry);
            }
            drop(models);
            self.publish_states();
        }
    }

    /// Rewrites `mofang_repository_model_state` from the table.
    fn publish_states(&self) {
        let gauge = &self.inner.options.metrics.model_state;
        let models = self.inner.models.read();
        let mut published = self.inner.published.lock();
        for (model, version) in published.drain(..) {
            for state in ["loading", "available", "end"] {
                gauge.remove(&[&model, &version, state]);
            }
        }
        for (name, entry) in models.iter() {
            for status in versions_of(entry) {
                let v = status.version.to_string();
                let current = match status.state {
                    VersionState::Loading => "loading",
                    VersionState::Available => "available",
                    VersionState::End => "end",
                };
                for state in ["loading", "available", "end"] {
                    gauge
                        .with(&[name, &v, state])
                        .set(i64::from(state == current));
                }
                published.push((name.clone(), v));
            }
        }
    }

    /// Updates the table from a scan; returns the loads to perform.
    fn apply_scan(&self, scanned: Vec<ModelOnDisk>) -> Vec<LoadJob> {
        let mut models = self.inner.models.write();
        models.retain(|name, _| {
            let keep = scanned.iter().any(|m| &m.name == name);
            if !keep {
                tracing::info!(model = %name, "model removed from the repository; unloading");
            }
            keep
        });
        let mut jobs = Vec::new();
        for disk in scanned {
            let entry = models
                .entry(disk.name.clone())
                .or_insert_with(|| ModelEntry {
                    config_text: None,
                    config: Err(String::new()),
                    versions: BTreeMap::new(),
                    wanted: Vec::new(),
                });
            match (&disk.config, &entry.config) {
                (Err(e), Ok(_)) => tracing::error!(
                    model = %disk.name,
                    "invalid config; loaded versions keep serving with the previous one: {e}"
                ),
                _ => {
                    entry.config_text = disk.config_text.clone();
                    entry.config = disk.config.clone();
                }
            }
            let policy = match &entry.config {
                Ok(c) => c.version_policy.clone(),
                Err(_) => Default::default(),
            };
            let on_disk: Vec<u64> = disk.versions.keys().copied().collect();
            let wanted = policy.select(&on_disk);
            // Versions whose directory is gone unload at once; versions the policy no longer
            // wants are retired once every wanted version is available (see `retire`).
            entry.versions.retain(|v, _| {
                let keep = on_disk.contains(v);
                if !keep {
                    tracing::info!(model = %disk.name, version = v, "version removed; unloading");
                }
                keep
            });
            entry.wanted = wanted.clone();
            for version in wanted {
                let Some((dir, stamp)) = disk.versions.get(&version) else {
                    continue;
                };
                let ready = matches!(
                    entry.versions.get(&version).map(|s| &s.state),
                    Some(SlotState::Ready(_))
                );
                let failed = |state: String| Slot {
                    stamp: FileStamp {
                        len: 0,
                        modified: None,
                    },
                    config_text: disk.config_text.clone(),
                    state: SlotState::Failed(state),
                };
                let stamp = match stamp {
                    Ok(s) => s.clone(),
                    Err(e) => {
                        if !ready {
                            entry.versions.insert(version, failed(e.clone()));
                        }
                        continue;
                    }
                };
                let config = match &disk.config {
                    Ok(c) => Arc::clone(c),
                    Err(e) => {
                        if !ready {
                            entry.versions.insert(version, failed(e.clone()));
                        }
                        continue;
                    }
                };
                let unchanged = entry.versions.get(&version).is_some_and(|slot| {
                    slot.stamp == stamp && slot.config_text == disk.config_text
                });
                if unchanged {
                    continue;
                }
                if !ready {
                    entry.versions.insert(
                        version,
                        Slot {
                            stamp: stamp.clone(),
                            config_text: disk.config_text.clone(),
                            state: SlotState::Loading,
                        },
                    );
                }
                jobs.push(LoadJob {
                    model: disk.name.clone(),
                    version,
                    dir: dir.clone(),
                    model_dir: disk.dir.clone(),
                    stamp,
                    config_text: disk.config_text.clone(),
                    config,
                });
            }
            retire(&disk.name, entry);
        }
        jobs
    }

    /// The servable a request asks for. Errors carry TF Serving's messages.
    pub fn get(&self, name: &str, selector: &VersionSelector) -> Result<Arc<Servable>> {
        let models = self.inner.models.read();
        let not_found = |version| {
            Error::NotFound(ServableRequest {
                name: name.to_string(),
                version,
            })
        };
        let entry = models.get(name).ok_or_else(|| not_found(None))?;
        let version = match selector {
            VersionSelector::Latest => {
                return entry
                    .versions
                    .values()
                    .rev()
                    .find_map(|s| match &s.state {
                        SlotState::Ready(r) => Some(Arc::clone(r)),
                        _ => None,
                    })
                    .ok_or_else(|| not_found(None));
            }
            VersionSelector::Specific(v) => *v,
            VersionSelector::Label(label) => {
                let labels = entry.config.as_ref().map(|c| &c.version_labels);
                *labels
                    .ok()
                    .and_then(|l| l.get(label))
                    .ok_or_else(|| Error::UnknownLabel(label.clone()))?
            }
        };
        match entry.versions.get(&version).map(|s| &s.state) {
            Some(SlotState::Ready(r)) => Ok(Arc::clone(r)),
            _ => Err(not_found(Some(version))),
        }
    }

    /// The versions of one model and their states, ascending.
    pub fn status(&self, name: &str, version: Option<u64>) -> Result<Vec<VersionStatus>> {
        let models = self.inner.models.read();
        let entry = models
            .get(name)
            .filter(|e| !e.versions.is_empty())
            .ok_or_else(|| Error::NoVersions(name.to_string()))?;
        let all = versions_of(entry);
        match version {
            None => Ok(all),
            Some(v) => {
                let found: Vec<VersionStatus> =
                    all.into_iter().filter(|s| s.version == v).collect();
                if found.is_empty() {
                    Err(Error::NoSuchVersion {
                        model: name.to_string(),
                        version: v,
                    })
                } else {
                    Ok(found)
                }
            }
        }
    }

    /// Every model and the state of each of its versions.
    pub fn models(&self) -> Vec<ModelStatus> {
        self.inner
            .models
            .read()
            .iter()
            .map(|(name, entry)| ModelStatus {
                name: name.clone(),
                versions: versions_of(entry),
            })
            .collect()
    }

    pub fn metrics(&self) -> &ServingMetrics {
        &self.inner.options.metrics
    }

    /// The version label → version map of a model (empty when it has none or is unknown).
    pub fn labels(&self, name: &str) -> BTreeMap<String, u64> {
        self.inner
            .models
            .read()
            .get(name)
            .and_then(|e| e.config.as_ref().ok().map(|c| c.version_labels.clone()))
            .unwrap_or_default()
    }
}

/// Unloads versions the policy no longer wants, but only once every wanted version is
/// available, so that a model never goes without a serving version while a new one loads or
/// after a new one failed (TF Serving's availability-preserving policy). Unwanted versions that
/// are not serving go at once.
fn retire(model: &str, entry: &mut ModelEntry) {
    let all_wanted_ready = entry.wanted.iter().all(|v| {
        matches!(
            entry.versions.get(v).map(|s| &s.state),
            Some(SlotState::Ready(_))
        )
    });
    let wanted = &entry.wanted;
    entry.versions.retain(|v, slot| {
        let keep =
            wanted.contains(v) || (matches!(slot.state, SlotState::Ready(_)) && !all_wanted_ready);
        if !keep {
            tracing::info!(model, version = v, "version no longer wanted; unloading");
        }
        keep
    });
}

fn versions_of(entry: &ModelEntry) -> Vec<VersionStatus> {
    entry
        .versions
        .iter()
        .map(|(v, slot)| {
            let (state, error) = match &slot.state {
                SlotState::Loading => (VersionState::Loading, None),
                SlotState::Ready(_) => (VersionState::Available, None),
                SlotState::Failed(e) => (VersionState::End, Some(e.clone())),
            };
            VersionStatus {
                version: *v,
                state,
                error,
            }
        })
        .collect()
}

async fn poll_loop(inner: Weak<Inner>, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        Manager { inner }.poll().await;
    }
}

fn scan(source: &Source) -> std::io::Result<Vec<ModelOnDisk>> {
    match source {
        Source::Single { name, base_path } => Ok(vec![scan_model(name.clone(), base_path)]),
        Source::Repository(root) => {
            let mut out = Vec::new();
            for entry in std::fs::read_dir(root)? {
                let entry = entry?;
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if name.starts_with('.') || !entry.path().is_dir() {
                    continue;
                }
                out.push(scan_model(name, &entry.path()));
            }
            out.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(out)
        }
    }
}

fn scan_model(name: String, dir: &Path) -> ModelOnDisk {
    let config_path = dir.join(CONFIG_FILE);
    let (config_text, config) = match std::fs::read_to_string(&config_path) {
        Ok(text) => {
            let parsed = ModelConfig::parse(&text)
                .map(Arc::new)
                .map_err(|e| format!("{}: {e}", config_path.display()));
            (Some(text), parsed)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            (None, Ok(Arc::new(ModelConfig::default_values())))
        }
        Err(e) => (None, Err(format!("{}: {e}", config_path.display()))),
    };
    let model_file = config
        .as_ref()
        .map(|c| c.model_file.clone())
        .unwrap_or_else(|_| ModelConfig::default_values().model_file);
    let mut versions = BTreeMap::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let Some(version) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let vdir = entry.path();
            if !vdir.is_dir() {
                continue;
            }
            let file = vdir.join(&model_file);
            let stamp = std::fs::metadata(&file)
                .map(|m| FileStamp {
                    len: m.len(),
                    modified: m.modified().ok(),
                })
                .map_err(|e| format!("{}: {e}", file.display()));
            versions.insert(version, (vdir, stamp));
        }
    }
    ModelOnDisk {
        name,
        dir: dir.to_path_buf(),
        config_text,
        config,
        versions,
    }
}

fn load(backends: &Backends, metrics: &ServingMetrics, job: LoadJob) -> Result<Servable> {
    let config = job.config;
    let kind = config
        .backend_kind()
        .unwrap_or_else(|| backends.default_kind());
    let backend = backends.get(kind)?;
    let options = LoadOptions {
        intra_op_threads: config.threads.intra_op,
        inter_op_threads: config.threads.inter_op,
        instances: config.instances,
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let wanted = options.instances * options.intra_op_threads.max(options.inter_op_threads);
    if wanted > cores {
        tracing::warn!(
            model = %job.model,
            version = job.version,
            "instances × threads = {wanted} exceeds the {cores} cores: executions will contend; \
             lower `instances` or `threads.intra_op` in config.yaml"
        );
    }
    let path = job.dir.join(&config.model_file);
    let model = backend.load(&path, &options)?;
    let labels = match &config.pipeline {
        Some(PipelineConfig::ImageClassification(p)) => match &p.labels {
            Some(file) => {
                let path = job.model_dir.join(file);
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| Error::Io(format!("labels file {}: {e}", path.display())))?;
                Some(Arc::new(mofang_pipeline::parse_labels(&text)))
            }
            None => None,
        },
        _ => None,
    };
    let token_classification = match &config.pipeline {
        Some(PipelineConfig::TokenClassification(p)) => Some(Arc::new(crate::text::load(
            p,
            &config,
            &job.model_dir,
            model.as_ref(),
        )?)),
        _ => None,
    };
    Servable::new(
        Parts {
            name: job.model,
            version: job.version,
            backend: kind,
            dir: job.dir,
            config,
            labels,
            token_classification,
            model,
        },
        metrics,
    )
}
