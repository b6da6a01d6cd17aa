//! What the stdio layer knows about its one session, and the rewrites of rmcp's answers
//! that depend on it.
//!
//! * The protocol revision: the one `initialize` negotiated, or, for 2026-07-28 (which has no
//!   `initialize`), the `io.modelcontextprotocol/protocolVersion` in each request's `_meta`.
//! * Whether rmcp's session has started: until it answers `initialize` (or a first inline
//!   2026-07-28 request), rmcp ends the whole service on a notification or a response, so
//!   those are held back (dropped with a log line) instead.
//! * Per revision (MCP 2025-11-25 "Tasks"; 2025-06-18 "resource_link"): `capabilities.tasks`
//!   and `execution.taskSupport` are advertised only to 2025-11-25 sessions; 2026-07-28
//!   `server/discover` advertises the tasks extension (`capabilities.extensions
//!   ["io.modelcontextprotocol/tasks"]`, served by `tasks::ext`; `params.task` there is
//!   ignored: a call is a plain call unless the request opts into the extension);
//!   `resource_link` content is removed for sessions older than 2025-06-18 (the asset URI
//!   is in the text too); every tool schema is reduced to standard JSON Schema 2020-12
//!   (see [`standard_schema`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde_json::{json, Map, Value};

/// First revision with tasks (`params.task`, `tasks/*`).
pub(super) const TASKS_REVISION: &str = "2025-11-25";
/// First revision without `initialize` (tasks moved to the `io.modelcontextprotocol/tasks`
/// extension, served by `tasks::ext`).
pub(super) const NO_INIT_REVISION: &str = "2026-07-28";
/// First revision with `resource_link` content.
const RESOURCE_LINK_REVISION: &str = "2025-06-18";
const META_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// The tools that accept `params.task` (2025-11-25).
pub(super) const TASK_TOOLS: [&str; 3] = ["execute_cell", "execute_code", "run_all_cells"];

/// How a forwarded request's answer is to be rewritten.
#[derive(Clone, Copy, Debug)]
enum Pending {
    /// `initialize`: learn the revision, start the session, add `capabilities.tasks`.
    Initialize,
    /// `tools/list`: standard schemas; `taskSupport` when `tasks` is true.
    ToolsList { tasks: bool },
    /// `tools/call` in a session older than 2025-06-18: drop `resource_link` blocks.
    OldToolCall,
    /// `server/discover` (2026-07-28): advertise the tasks extension.
    Discover,
    /// Any other request sent before the session started: a result starts it.
    Starting,
}

/// Which tasks `tasks/list` shows in a session (MCP 2025-11-25 "Tasks": a requestor lists
/// its own tasks). `tasks/get`, `tasks/result` and `tasks/cancel` accept any task id from any
/// session: task ids are execution ids, unguessable and durable.
#[derive(Debug)]
pub(crate) enum TaskScope {
    /// Every execution of the data dir (the one session of a stdio server, which owns the
    /// data dir, including tasks created before a restart).
    All,
    /// The tasks created in this session, newest last (at most [`MAX_OWN_TASKS`]).
    Own(Mutex<VecDeque<String>>),
}

/// Tasks remembered per HTTP session for `tasks/list`.
pub(crate) const MAX_OWN_TASKS: usize = 1000;

impl TaskScope {
    /// A scope for a session that lists only its own tasks.
    pub(crate) fn own() -> TaskScope {
        TaskScope::Own(Mutex::new(VecDeque::new()))
    }
}

/// The state of one MCP session shared by the input and output sides of its pipeline.
pub(crate) struct Session {
    started: AtomicBool,
    revision: Mutex<Option<String>>,
    pending: Mutex<HashMap<String, Pending>>,
    tasks: TaskScope,
}

impl Default for Session {
    fn default() -> Self {
        Session::new(TaskScope::All)
    }
}

impl Session {
    /// A session that has not started yet.
    pub(crate) fn new(tasks: TaskScope) -> Session {
        Session {
            started: AtomicBool::new(false),
            revision: Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
            tasks,
        }
    }

    /// Notes a task created in this session.
    pub(super) fn created_task(&self, id: &str) {
        if let TaskScope::Own(own) = &self.tasks {
            if let Ok(mut own) = own.lock() {
                if own.len() >= MAX_OWN_TASKS {
                    own.pop_front();
                }
                own.push_back(id.to_string());
            }
        }
    }

    /// The ids of the tasks this session lists, newest first; `None` for every task.
    pub(super) fn own_tasks(&self) -> Option<Vec<String>> {
        match &self.tasks {
            TaskScope::All => None,
            TaskScope::Own(own) => Some(
                own.lock()
                    .map(|o| o.iter().rev().cloned().collect())
                    .unwrap_or_default(),
            ),
        }
    }

    /// Whether rmcp's session loop is running (notifications and responses may go to it).
    pub(super) fn started(&self) -> bool {
        self.started.load(Ordering::SeqCst)
    }

    /// The revision a request is spoken in: its own `_meta` protocol version, else the
    /// session's negotiated one.
    pub(super) fn revision_of(&self, msg: &Value) -> Option<String> {
        msg.pointer("/params/_meta")
            .and_then(|m| m.get(META_VERSION))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| self.revision.lock().ok().and_then(|r| r.clone()))
    }

    /// Whether task-augmented calls and `tasks/*` are served for this request.
    pub(super) fn tasks_for(&self, msg: &Value) -> bool {
        self.revision_of(msg)
            .is_some_and(|r| r.as_str() >= TASKS_REVISION && r.as_str() < NO_INIT_REVISION)
    }

    /// Whether the 2026-07-28 tasks extension (`tasks::ext`) serves this request: spoken in
    /// 2026-07-28 or later (whether it opted in is the extension's own check).
    pub(super) fn extension_tasks_for(&self, msg: &Value) -> bool {
        self.revision_of(msg)
            .is_some_and(|r| r.as_str() >= NO_INIT_REVISION)
    }

    /// Notes a request about to go to rmcp whose answer needs a rewrite.
    pub(super) fn forwarding(&self, msg: &Value) {
        let (Some(id), Some(method)) = (msg.get("id"), msg.get("method").and_then(Value::as_str))
        else {
            return;
        };
        let kind = match method {
            "initialize" => Some(Pending::Initialize),
            "tools/list" => Some(Pending::ToolsList {
                tasks: self.tasks_for(msg),
            }),
            "tools/call"
                if self
                    .revision_of(msg)
                    .is_some_and(|r| r.as_str() < RESOURCE_LINK_REVISION) =>
            {
                Some(Pending::OldToolCall)
            }
            "server/discover" if self.extension_tasks_for(msg) => Some(Pending::Discover),
            "ping" | "server/discover" => None,
            _ if !self.started() => Some(Pending::Starting),
            _ => None,
        };
        if let (Some(kind), Ok(mut p)) = (kind, self.pending.lock()) {
            p.insert(id.to_string(), kind);
        }
    }

    /// Rewrites one line of rmcp's output as the session requires.
    pub(super) fn rewrite(&self, line: String) -> String {
        if self.pending.lock().map(|p| p.is_empty()).unwrap_or(true) {
            return line;
        }
        let Ok(mut msg) = serde_json::from_str::<Value>(&line) else {
            return line;
        };
        if msg.get("method").is_some() {
            return line; // a request or notification from the server, not an answer
        }
        let Some(id) = msg.get("id").map(Value::to_string) else {
            return line;
        };
        let Some(kind) = self.pending.lock().ok().and_then(|mut p| p.remove(&id)) else {
            return line;
        };
        let Some(result) = msg.get_mut("result").and_then(Value::as_object_mut) else {
            return line;
        };
        match kind {
            Pending::Initialize => {
                let revision = result
                    .get("protocolVersion")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                let tasks = revision
                    .as_deref()
                    .is_some_and(|r| (TASKS_REVISION..NO_INIT_REVISION).contains(&r));
                if let Ok(mut r) = self.revision.lock() {
                    *r = revision;
                }
                self.started.store(true, Ordering::SeqCst);
                if let (true, Some(caps)) = (
                    tasks,
                    result
                        .get_mut("capabilities")
                        .and_then(Value::as_object_mut),
                ) {
                    caps.insert(
                        "tasks".into(),
                        json!({"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}),
                    );
                }
            }
            Pending::ToolsList { tasks } => {
                if let Some(tools) = result.get_mut("tools").and_then(Value::as_array_mut) {
                    for tool in tools {
                        rewrite_tool(tool, tasks);
                    }
                }
            }
            Pending::OldToolCall => {
                if let Some(content) = result.get_mut("content").and_then(Value::as_array_mut) {
                    content
                        .retain(|c| c.get("type").and_then(Value::as_str) != Some("resource_link"));
                }
            }
            Pending::Starting => self.started.store(true, Ordering::SeqCst),
            Pending::Discover => {
                if let Some(caps) = result
                    .get_mut("capabilities")
                    .and_then(Value::as_object_mut)
                {
                    let extensions = caps.entry("extensions").or_insert_with(|| json!({}));
                    if let Some(ext) = extensions.as_object_mut() {
                        ext.insert(super::tasks::ext::EXTENSION.into(), json!({}));
                    }
                }
            }
        }
        msg.to_string()
    }
}

fn rewrite_tool(tool: &mut Value, tasks: bool) {
    for key in ["inputSchema", "outputSchema"] {
        if let Some(schema) = tool.get_mut(key) {
            standard_schema(schema);
        }
    }
    let name = tool.get("name").and_then(Value::as_str).unwrap_or("");
    if tasks && TASK_TOOLS.contains(&name) {
        tool["execution"] = json!({"taskSupport": "optional"});
    }
}

/// The `format` values JSON Schema 2020-12 defines (Validation §7.3).
const STANDARD_FORMATS: [&str; 19] = [
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "idn-email",
    "hostname",
    "idn-hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uri-reference",
    "iri",
    "iri-reference",
    "uuid",
    "uri-template",
    "json-pointer",
    "relative-json-pointer",
    "regex",
];

/// Keywords whose value is one subschema.
const SCHEMA_KEYWORDS: [&str; 9] = [
    "items",
    "additionalProperties",
    "not",
    "contains",
    "propertyNames",
    "if",
    "then",
    "else",
    "unevaluatedItems",
];
/// Keywords whose value is an array of subschemas.
const SCHEMA_ARRAYS: [&str; 4] = ["allOf", "anyOf", "oneOf", "prefixItems"];
/// Keywords whose value maps names to subschemas.
const SCHEMA_MAPS: [&str; 4] = ["properties", "$defs", "definitions", "patternProperties"];

/// Reduces a schema to standard JSON Schema 2020-12 in place: `format` values the
/// specification does not define (schemars' `uint`, `int64`, `double`, ...) are removed (the
/// `type` and `minimum` already say it), and boolean subschemas (`items: true`) become the
/// equivalent objects (`{}` for true, `{"not": {}}` for false), which strict validators want.
pub(super) fn standard_schema(schema: &mut Value) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if obj
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|f| !STANDARD_FORMATS.contains(&f))
    {
        obj.remove("format");
    }
    for (key, value) in obj.iter_mut() {
        let key = key.as_str();
        if SCHEMA_KEYWORDS.contains(&key) {
            sub(value);
        } else if SCHEMA_ARRAYS.contains(&key) {
            value.as_array_mut().into_iter().flatten().for_each(sub);
        } else if SCHEMA_MAPS.contains(&key) {
            value
                .as_object_mut()
                .into_iter()
                .flat_map(Map::values_mut)
                .for_each(sub);
        }
    }
}

fn sub(schema: &mut Value) {
    match schema {
        Value::Bool(true) => *schema = json!({}),
        Value::Bool(false) => *schema = json!({"not": {}}),
        _ => standard_schema(schema),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_lose_custom_formats_and_boolean_subschemas() {
        let mut s = json!({
            "type": "object",
            "properties": {
                "n": {"type": "integer", "format": "uint", "minimum": 0},
                "t": {"type": "string", "format": "date-time"},
                "v": {"type": "array", "items": true},
                "o": {"anyOf": [{"$ref": "#/$defs/X"}, {"type": "null"}]}
            },
            "$defs": {"X": {"type": "number", "format": "double", "additionalProperties": false}}
        });
        standard_schema(&mut s);
        assert_eq!(
            s["properties"]["n"],
            json!({"type": "integer", "minimum": 0})
        );
        assert_eq!(s["properties"]["t"]["format"], "date-time");
        assert_eq!(s["properties"]["v"]["items"], json!({}));
        assert_eq!(
            s["$defs"]["X"],
            json!({"type": "number", "additionalProperties": {"not": {}}})
        );
    }

    #[test]
    fn revisions_pick_what_is_advertised() {
        let s = Session::default();
        let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize"});
        s.forwarding(&init);
        let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {
            "protocolVersion": "2025-03-26", "capabilities": {}}});
        let out: Value = serde_json::from_str(&s.rewrite(answer.to_string())).unwrap();
        assert!(s.started());
        assert!(out["result"]["capabilities"].get("tasks").is_none());
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call"});
        assert!(!s.tasks_for(&call));
        s.forwarding(&call);
        let answer = json!({"jsonrpc": "2.0", "id": 2, "result": {"content": [
            {"type": "text", "text": "see asset://x"},
            {"type": "resource_link", "uri": "asset://x", "name": "x"}]}});
        let out: Value = serde_json::from_str(&s.rewrite(answer.to_string())).unwrap();
        assert_eq!(out["result"]["content"].as_array().unwrap().len(), 1);
        let inline = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"_meta": {META_VERSION: "2026-07-28"}}});
        assert!(!s.tasks_for(&inline));
        assert!(s.extension_tasks_for(&inline) && !s.extension_tasks_for(&call));
        let discover = json!({"jsonrpc": "2.0", "id": 4, "method": "server/discover",
            "params": {"_meta": {META_VERSION: "2026-07-28"}}});
        s.forwarding(&discover);
        let answer = json!({"jsonrpc": "2.0", "id": 4, "result": {"capabilities": {"tools": {}}}});
        let out: Value = serde_json::from_str(&s.rewrite(answer.to_string())).unwrap();
        assert_eq!(
            out["result"]["capabilities"]["extensions"],
            json!({"io.modelcontextprotocol/tasks": {}})
        );
    }
}
