//! The papermill record in a notebook: `metadata.papermill` of the notebook and of each cell,
//! timestamps as papermill writes them (`datetime.now(timezone.utc).isoformat()`), and the
//! error banner cells.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::document::{Notebook, cell_tags, new_markdown_cell};

pub const ERROR_MARKER_TAG: &str = "papermill-error-cell-tag";
const ERROR_STYLE: &str =
    "style=\"color:red; font-family:Helvetica Neue, Helvetica, Arial, sans-serif; font-size:2em;\"";

/// A UTC instant with microsecond resolution (as Python's datetime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp {
    micros: i64,
}

impl Stamp {
    pub fn now() -> Stamp {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Stamp { micros }
    }

    /// `datetime.isoformat()` of an aware UTC datetime: `2024-01-02T03:04:05.678901+00:00`,
    /// the fraction left out when it is zero.
    pub fn iso(self) -> String {
        let secs = self.micros.div_euclid(1_000_000);
        let frac = self.micros.rem_euclid(1_000_000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let time = format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
        if frac == 0 {
            format!("{y:04}-{m:02}-{d:02}T{time}+00:00")
        } else {
            format!("{y:04}-{m:02}-{d:02}T{time}.{frac:06}+00:00")
        }
    }

    /// `(self - earlier).total_seconds()`.
    pub fn seconds_since(self, earlier: Stamp) -> f64 {
        (self.micros - earlier.micros) as f64 / 1e6
    }
}

/// The current time as papermill and Jupyter message headers write it.
pub fn now_iso() -> String {
    Stamp::now().iso()
}

/// Howard Hinnant's days-to-civil-date algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// `metadata.papermill` of the notebook, created as papermill's `load_notebook_node` does.
pub fn ensure_notebook_record(nb: &mut Notebook, version: &str) {
    let meta = nb.metadata_mut();
    if !meta.get("papermill").is_some_and(Value::is_object) {
        meta.insert(
            "papermill".into(),
            json!({
                "default_parameters": {},
                "parameters": {},
                "environment_variables": {},
                "version": version,
            }),
        );
    }
    for cell in nb.cells_mut() {
        let Some(meta) = cell.get_mut("metadata").and_then(Value::as_object_mut) else {
            continue;
        };
        if !meta.contains_key("tags") {
            meta.insert("tags".into(), json!([]));
        }
        if !meta.get("papermill").is_some_and(Value::is_object) {
            meta.insert("papermill".into(), json!({}));
        }
    }
}

/// The notebook's `metadata.papermill` object (after [`ensure_notebook_record`]).
pub fn notebook_record(nb: &mut Notebook) -> &mut Map<String, Value> {
    let meta = nb.metadata_mut();
    if !meta.get("papermill").is_some_and(Value::is_object) {
        meta.insert("papermill".into(), json!({}));
    }
    match meta.get_mut("papermill") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("inserted above"),
    }
}

/// One cell's `metadata.papermill` object.
pub fn cell_record(cell: &mut Value) -> &mut Map<String, Value> {
    if !cell.get("metadata").is_some_and(Value::is_object) {
        cell["metadata"] = json!({});
    }
    let meta = &mut cell["metadata"];
    if !meta.get("papermill").is_some_and(Value::is_object) {
        meta["papermill"] = json!({});
    }
    match meta.get_mut("papermill") {
        Some(Value::Object(m)) => m,
        _ => unreachable!("inserted above"),
    }
}

/// papermill's `remove_error_markers`.
pub fn remove_error_markers(nb: &mut Notebook) {
    nb.cells_mut()
        .retain(|cell| !cell_tags(cell).contains(&ERROR_MARKER_TAG));
}

/// papermill's `raise_for_execution_errors` banner: the cell index and execution count of the
/// first error (an `error` output other than a clean `SystemExit`, or a cell whose record says
/// `exception: true`), if any.
pub fn find_execution_error(nb: &Notebook) -> Option<(usize, Value)> {
    for (index, cell) in nb.cells().iter().enumerate() {
        let mut has_sys_exit = false;
        if let Some(outputs) = cell.get("outputs").and_then(Value::as_array) {
            for output in outputs {
                if output.get("output_type").and_then(Value::as_str) != Some("error") {
                    continue;
                }
                let ename = output.get("ename").and_then(Value::as_str);
                let evalue = output.get("evalue").and_then(Value::as_str);
                if ename == Some("SystemExit") && matches!(evalue, Some("" | "0")) {
                    has_sys_exit = true;
                    continue;
                }
                return Some((index, exec_count(cell)));
            }
        }
        if !has_sys_exit
            && cell.pointer("/metadata/papermill/exception") == Some(&Value::Bool(true))
        {
            return Some((index, exec_count(cell)));
        }
    }
    None
}

fn exec_count(cell: &Value) -> Value {
    cell.get("execution_count").cloned().unwrap_or(Value::Null)
}

/// Inserts papermill's two banner cells: the anchor before the failing cell and the message
/// at the top (the notebook is upgraded to 4.5 first, as papermill does).
pub fn insert_error_banner(nb: &mut Notebook, cell_index: usize, exec_count: &Value) {
    nb.upgrade();
    let count = match exec_count {
        Value::Null => "None".to_owned(),
        other => other.to_string(),
    };
    let message = format!(
        "<span {ERROR_STYLE}>An Exception was encountered at '<a href=\"#papermill-error-cell\">In [{count}]</a>'.</span>"
    );
    let anchor = format!(
        "<span id=\"papermill-error-cell\" {ERROR_STYLE}>Execution using papermill encountered an exception here and stopped:</span>"
    );
    let mut anchor_cell = new_markdown_cell(&anchor);
    anchor_cell["metadata"]["tags"] = json!([ERROR_MARKER_TAG]);
    let mut message_cell = new_markdown_cell(&message);
    message_cell["metadata"]["tags"] = json!([ERROR_MARKER_TAG]);
    let cells = nb.cells_mut();
    cells.insert(cell_index.min(cells.len()), anchor_cell);
    cells.insert(0, message_cell);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_format_matches_python() {
        // datetime(2024, 2, 29, 23, 59, 58, 5, tzinfo=timezone.utc).isoformat()
        let s = Stamp {
            micros: 1_709_251_198_000_005,
        };
        assert_eq!(s.iso(), "2024-02-29T23:59:58.000005+00:00");
        let whole = Stamp {
            micros: 1_709_251_198_000_000,
        };
        assert_eq!(whole.iso(), "2024-02-29T23:59:58+00:00");
        assert_eq!(Stamp { micros: 0 }.iso(), "1970-01-01T00:00:00+00:00");
        assert_eq!(s.seconds_since(whole), 0.000005);
    }
}
