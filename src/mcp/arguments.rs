//! Tool arguments checked against the tool's own `inputSchema` before rmcp decodes them, so
//! a wrong type is reported with the argument's name and a plain type ("argument `start`
//! must be an integer >= 0, got the number 1.5") rather than serde's "invalid type: floating
//! point `1.5`, expected usize". A failure is a tool error (`isError: true`), as MCP
//! 2025-11-25 asks for input validation errors, so the model can correct the call.
//!
//! Covers the subset of JSON Schema that schemars emits for the argument structs: `type`
//! (one or a list), `minimum`/`maximum`, `required`, `properties`, `items`, `anyOf`/`oneOf`,
//! and local `$ref`s into `$defs`.

use serde_json::{Map, Value};

use super::frames::describe;
use super::server::JupyterMcp;

/// The tool error to answer a `tools/call` with, or `None` when its arguments fit the schema
/// (or the tool is unknown: rmcp answers that).
pub(super) fn check(svc: &JupyterMcp, params: &Value) -> Option<rmcp::model::CallToolResult> {
    let name = params.get("name")?.as_str()?;
    let schema = svc.input_schema(name)?;
    let empty = Map::new();
    let args = params
        .get("arguments")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let problem = check_object(&schema, &schema, args, "")?;
    Some(super::results::fail(format!(
        "invalid arguments for {name}: {problem}; fix the call (the tool's inputSchema lists \
         every argument and its type)"
    )))
}

fn check_object(
    root: &Map<String, Value>,
    schema: &Map<String, Value>,
    args: &Map<String, Value>,
    path: &str,
) -> Option<String> {
    let props = schema.get("properties").and_then(Value::as_object);
    for req in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if args.get(req).is_none() {
            return Some(format!("argument `{}` is required", join(path, req)));
        }
    }
    for (key, value) in args {
        if let Some(sub) = props.and_then(|p| p.get(key)) {
            if let Some(problem) = check_value(root, sub, value, &join(path, key)) {
                return Some(problem);
            }
        }
    }
    None
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Follows a local `$ref` (`#/$defs/Name`); the schema itself otherwise.
fn resolve<'a>(root: &'a Map<String, Value>, schema: &'a Value) -> &'a Value {
    let Some(path) = schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/"))
    else {
        return schema;
    };
    let mut parts = path.split('/');
    let Some(mut cur) = parts.next().and_then(|k| root.get(k)) else {
        return schema;
    };
    for k in parts {
        match cur.get(k) {
            Some(v) => cur = v,
            None => return schema,
        }
    }
    cur
}

fn check_value(
    root: &Map<String, Value>,
    schema: &Value,
    value: &Value,
    path: &str,
) -> Option<String> {
    let schema = resolve(root, schema);
    let obj = schema.as_object()?;
    if let Some(alts) = obj
        .get("anyOf")
        .or_else(|| obj.get("oneOf"))
        .and_then(Value::as_array)
    {
        let problems: Vec<String> = alts
            .iter()
            .filter_map(|alt| check_value(root, alt, value, path))
            .collect();
        if problems.len() < alts.len() {
            return None;
        }
        let expected: Vec<String> = alts.iter().map(|a| expected(root, a)).collect();
        return Some(format!(
            "argument `{path}` must be {}, got {}",
            expected.join(" or "),
            describe(Some(value))
        ));
    }
    if let Some(types) = obj.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !types.is_empty() && !types.iter().any(|t| is_type(t, value)) {
            return Some(format!(
                "argument `{path}` must be {}, got {}",
                expected(root, schema),
                describe(Some(value))
            ));
        }
    }
    if let Some(n) = value.as_f64() {
        let min = obj.get("minimum").and_then(Value::as_f64);
        let max = obj.get("maximum").and_then(Value::as_f64);
        if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
            return Some(format!(
                "argument `{path}` must be {}, got {}",
                expected(root, schema),
                describe(Some(value))
            ));
        }
    }
    match value {
        Value::Array(items) => {
            let item_schema = obj.get("items")?;
            items
                .iter()
                .enumerate()
                .find_map(|(i, item)| check_value(root, item_schema, item, &format!("{path}[{i}]")))
        }
        Value::Object(map) => check_object(root, resolve(root, schema).as_object()?, map, path),
        _ => None,
    }
}

fn is_type(t: &str, value: &Value) -> bool {
    match t {
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}

/// "a string", "an integer >= 0", "an array", "null", ... for a schema.
fn expected(root: &Map<String, Value>, schema: &Value) -> String {
    let schema = resolve(root, schema);
    if let Some(alts) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
    {
        return alts
            .iter()
            .map(|a| expected(root, a))
            .collect::<Vec<_>>()
            .join(" or ");
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => return "a value of the documented shape".into(),
    };
    let bound = match (
        schema.get("minimum").and_then(Value::as_f64),
        schema.get("maximum").and_then(Value::as_f64),
    ) {
        (Some(lo), Some(hi)) => format!(" from {lo} to {hi}"),
        (Some(lo), None) => format!(" >= {lo}"),
        (None, Some(hi)) => format!(" <= {hi}"),
        (None, None) => String::new(),
    };
    types
        .iter()
        .map(|t| match *t {
            "string" => "a string".to_string(),
            "integer" => format!("an integer{bound}"),
            "number" => format!("a number{bound}"),
            "boolean" => "true or false".to_string(),
            "array" => "an array".to_string(),
            "object" => "an object".to_string(),
            "null" => "null (or left out)".to_string(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problem(schema: Value, args: Value) -> Option<String> {
        let schema = schema.as_object().unwrap().clone();
        check_object(&schema, &schema, args.as_object().unwrap(), "")
    }

    #[test]
    fn names_the_argument_and_a_plain_type() {
        let schema = json!({
            "type": "object",
            "required": ["notebook"],
            "properties": {
                "notebook": {"type": "string"},
                "start": {"type": ["integer", "null"], "format": "uint", "minimum": 0},
                "cells": {"type": ["array", "null"], "items": {"$ref": "#/$defs/NewCell"}}
            },
            "$defs": {"NewCell": {"type": "object", "required": ["source"],
                "properties": {"source": {"type": "string"}}}}
        });
        assert_eq!(
            problem(schema.clone(), json!({"notebook": 1.5})).unwrap(),
            "argument `notebook` must be a string, got the number 1.5"
        );
        assert_eq!(
            problem(schema.clone(), json!({"notebook": "a", "start": -1})).unwrap(),
            "argument `start` must be an integer >= 0 or null (or left out), got the number -1"
        );
        assert_eq!(
            problem(schema.clone(), json!({})).unwrap(),
            "argument `notebook` is required"
        );
        assert_eq!(
            problem(
                schema.clone(),
                json!({"notebook": "a", "cells": [{"source": 3}]})
            )
            .unwrap(),
            "argument `cells[0].source` must be a string, got the number 3"
        );
        assert_eq!(
            problem(schema, json!({"notebook": "a", "start": 3, "cells": null})),
            None
        );
    }
}
