//! Kernel iopub messages → cell outputs, as nbclient records them (`output_from_msg`,
//! `clear_output` with and without `wait`, `update_display_data` and display ids across cells,
//! execution counts), with consecutive outputs of the same stream joined as Jupyter's
//! front-ends show them.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::document::rejoin_mimebundle;
use crate::wire::Message;

/// Output state across one notebook run.
#[derive(Debug, Default)]
pub struct Outputs {
    /// display_id → cell index → output indices showing it.
    display_ids: HashMap<String, BTreeMap<usize, Vec<usize>>>,
    clear_before_next_output: bool,
}

impl Outputs {
    /// Called when a cell starts executing.
    pub fn start_cell(&mut self) {
        self.clear_before_next_output = false;
    }

    /// Applies one iopub message of cell `index`; returns the output it appended or extended.
    pub fn handle(&mut self, cells: &mut [Value], index: usize, msg: &Message) -> Option<Value> {
        let msg_type = msg.msg_type();
        let content = &msg.content;
        let display_id = content
            .get("transient")
            .and_then(|t| t.get("display_id"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(id) = &display_id
            && matches!(
                msg_type,
                "execute_result" | "display_data" | "update_display_data"
            )
        {
            self.update_display(cells, id, content);
        }
        let cell = cells.get_mut(index)?;
        if let Some(count) = content.get("execution_count") {
            cell["execution_count"] = count.clone();
        }
        match msg_type {
            "clear_output" => {
                if content.get("wait").and_then(Value::as_bool) == Some(true) {
                    self.clear_before_next_output = true;
                } else {
                    clear(cell);
                    self.forget_cell(index);
                }
                None
            }
            "execute_input" | "update_display_data" | "status" => None,
            t if t.starts_with("comm") => None,
            _ => {
                let out = output_from_msg(msg_type, content)?;
                if self.clear_before_next_output {
                    clear(cell);
                    self.forget_cell(index);
                    self.clear_before_next_output = false;
                }
                let outputs = cell.get_mut("outputs")?.as_array_mut()?;
                if out["output_type"] == "stream"
                    && let Some(last) = outputs.last_mut()
                    && last["output_type"] == "stream"
                    && last["name"] == out["name"]
                {
                    let mut text = last["text"].as_str().unwrap_or("").to_owned();
                    text.push_str(out["text"].as_str().unwrap_or(""));
                    last["text"] = Value::String(text);
                    return Some(out);
                }
                if let Some(id) = display_id {
                    self.display_ids
                        .entry(id)
                        .or_default()
                        .entry(index)
                        .or_default()
                        .push(outputs.len());
                }
                outputs.push(out.clone());
                Some(out)
            }
        }
    }

    fn update_display(&mut self, cells: &mut [Value], id: &str, content: &Value) {
        let Some(places) = self.display_ids.get(id) else {
            return;
        };
        let data = bundle(content.get("data"));
        let metadata = content
            .get("metadata")
            .cloned()
            .unwrap_or_else(|| json!({}));
        for (cell_index, output_indices) in places {
            let Some(outputs) = cells
                .get_mut(*cell_index)
                .and_then(|c| c.get_mut("outputs"))
                .and_then(Value::as_array_mut)
            else {
                continue;
            };
            for i in output_indices {
                if let Some(output) = outputs.get_mut(*i) {
                    output["data"] = data.clone();
                    output["metadata"] = metadata.clone();
                }
            }
        }
    }

    fn forget_cell(&mut self, index: usize) {
        for cells in self.display_ids.values_mut() {
            if let Some(indices) = cells.get_mut(&index) {
                indices.clear();
            }
        }
    }
}

fn clear(cell: &mut Value) {
    cell["outputs"] = json!([]);
}

fn bundle(data: Option<&Value>) -> Value {
    match data {
        Some(Value::Object(d)) => {
            let mut d = d.clone();
            rejoin_mimebundle(&mut d);
            Value::Object(d)
        }
        _ => json!({}),
    }
}

/// nbformat's `output_from_msg`.
fn output_from_msg(msg_type: &str, content: &Value) -> Option<Value> {
    let field = |k: &str| content.get(k).cloned().unwrap_or(Value::Null);
    let metadata = match content.get("metadata") {
        Some(Value::Object(m)) => Value::Object(m.clone()),
        _ => json!({}),
    };
    Some(match msg_type {
        "execute_result" => json!({
            "output_type": "execute_result",
            "data": bundle(content.get("data")),
            "metadata": metadata,
            "execution_count": field("execution_count"),
        }),
        "display_data" => json!({
            "output_type": "display_data",
            "data": bundle(content.get("data")),
            "metadata": metadata,
        }),
        "stream" => json!({
            "output_type": "stream",
            "name": field("name"),
            "text": content.get("text").and_then(Value::as_str).unwrap_or(""),
        }),
        "error" => json!({
            "output_type": "error",
            "ename": field("ename"),
            "evalue": field("evalue"),
            "traceback": match content.get("traceback") {
                Some(Value::Array(t)) => Value::Array(t.clone()),
                _ => json!([]),
            },
        }),
        other => {
            tracing::debug!("ignoring iopub message {other}");
            return None;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(msg_type: &str, content: Value) -> Message {
        Message {
            header: json!({"msg_type": msg_type, "msg_id": "m"}),
            parent_header: json!({"msg_id": "p"}),
            metadata: json!({}),
            content,
        }
    }

    #[test]
    fn streams_join_displays_update_and_clears_wait() {
        let mut cells = vec![
            json!({"cell_type": "code", "outputs": [], "execution_count": null}),
            json!({"cell_type": "code", "outputs": [], "execution_count": null}),
        ];
        let mut o = Outputs::default();
        o.handle(
            &mut cells,
            0,
            &msg("stream", json!({"name": "stdout", "text": "a\n"})),
        );
        o.handle(
            &mut cells,
            0,
            &msg("stream", json!({"name": "stdout", "text": "b\n"})),
        );
        o.handle(
            &mut cells,
            0,
            &msg("stream", json!({"name": "stderr", "text": "e\n"})),
        );
        o.handle(
            &mut cells,
            0,
            &msg("stream", json!({"name": "stdout", "text": "c\n"})),
        );
        o.handle(
            &mut cells,
            0,
            &msg(
                "display_data",
                json!({"data": {"text/plain": "v1"}, "metadata": {}, "transient": {"display_id": "d"}}),
            ),
        );
        o.handle(
            &mut cells,
            1,
            &msg(
                "update_display_data",
                json!({"data": {"text/plain": "v2"}, "metadata": {}, "transient": {"display_id": "d"}}),
            ),
        );
        o.handle(
            &mut cells,
            1,
            &msg("execute_input", json!({"execution_count": 7})),
        );
        let outs = cells[0]["outputs"].as_array().expect("list");
        assert_eq!(outs.len(), 4);
        assert_eq!(outs[0]["text"], "a\nb\n");
        assert_eq!(outs[3]["data"]["text/plain"], "v2");
        assert_eq!(cells[1]["outputs"], json!([]));
        assert_eq!(cells[1]["execution_count"], 7);

        o.start_cell();
        o.handle(
            &mut cells,
            1,
            &msg("stream", json!({"name": "stdout", "text": "x"})),
        );
        o.handle(&mut cells, 1, &msg("clear_output", json!({"wait": true})));
        assert_eq!(cells[1]["outputs"].as_array().map(Vec::len), Some(1));
        o.handle(
            &mut cells,
            1,
            &msg("stream", json!({"name": "stdout", "text": "y"})),
        );
        assert_eq!(
            cells[1]["outputs"],
            json!([{"output_type": "stream", "name": "stdout", "text": "y"}])
        );
        o.handle(&mut cells, 1, &msg("clear_output", json!({"wait": false})));
        assert_eq!(cells[1]["outputs"], json!([]));
    }
}
