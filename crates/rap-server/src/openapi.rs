//! `/openapi.json`: an OpenAPI 3.1 document built from the route table the router itself is
//! built from ([`crate::server::routes`]), so a route cannot be served undocumented or
//! documented unserved. Schemas of the bodies are written next to the types here.
//!
//! (utoipa would derive schemas from the types, but its proc-macros cost build time this
//! project does not have; one table serving both purposes keeps the document honest.)

use serde_json::{json, Value};

/// What a request body is.
#[derive(Debug, Clone, Copy)]
pub enum Body {
    /// `multipart/form-data` with these fields (name, description); `image` fields are files.
    Multipart(&'static [(&'static str, &'static str)]),
    /// `application/json` with this schema (a `#/components/schemas` name).
    Json(&'static str),
}

/// The documentation of one operation.
#[derive(Debug, Clone, Copy)]
pub struct Doc {
    pub summary: &'static str,
    pub tag: &'static str,
    pub body: Option<Body>,
    /// (status, description, response schema name or "" for none/binary)
    pub responses: &'static [(u16, &'static str, &'static str)],
    /// Whether an API key is needed (when keys are configured).
    pub auth: bool,
}

/// One documented route: method (lowercase), path in OpenAPI form (`{name}`), doc.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    pub method: &'static str,
    pub path: &'static str,
    pub doc: Doc,
}

fn schemas() -> Value {
    let bbox = json!({"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4,
        "description": "[x1, y1, x2, y2] in pixels of the (orientation-corrected) query image"});
    json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
            "required": ["message", "type"], "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "enum": ["invalid_request_error", "authentication_error",
                    "not_found_error", "conflict_error", "request_too_large", "server_busy", "timeout",
                    "model_unavailable", "model_error", "server_error", "method_not_allowed",
                    "permission_error"]}}}}},
        "ConceptImage": {"type": "object", "properties": {
            "id": {"type": "string", "description": "sha256 of the bytes, 64 hex characters"},
            "width": {"type": "integer"}, "height": {"type": "integer"},
            "format": {"type": "string"}, "bytes": {"type": "integer"}}},
        "Concept": {"type": "object", "properties": {
            "id": {"type": "string"}, "name": {"type": "string"},
            "aliases": {"type": "array", "items": {"type": "string"}},
            "category": {"type": "string"}, "info": {"type": "string"},
            "images": {"type": "array", "items": {"$ref": "#/components/schemas/ConceptImage"}},
            "negatives": {"type": "array", "items": {"$ref": "#/components/schemas/ConceptImage"},
                "description": "negative examples (\"not this concept\"); absent when there are none"},
            "created_at": {"type": "integer", "description": "unix ms"},
            "updated_at": {"type": "integer", "description": "unix ms"}}},
        "ConceptList": {"type": "object", "properties": {"concepts": {"type": "array",
            "items": {"$ref": "#/components/schemas/Concept"}}}},
        "Deleted": {"type": "object", "properties": {"deleted": {"$ref": "#/components/schemas/Concept"}}},
        "ConceptPatch": {"type": "object", "additionalProperties": false, "properties": {
            "name": {"type": "string", "description": "a new name"},
            "info": {"type": "string"}, "category": {"type": "string"},
            "add_aliases": {"type": "array", "items": {"type": "string"}},
            "remove_aliases": {"type": "array", "items": {"type": "string"}}}},
        "Hit": {"type": "object", "properties": {
            "id": {"type": "string"}, "name": {"type": "string"},
            "score": {"type": "number", "description": "cosine similarity; 1.0 for a concept only named in the text"},
            "via": {"type": "string", "enum": ["image", "text", "text+image"],
                "description": "text+image: named in the text and seen in the image (score, box and confidence are the image's)"},
            "box": {"oneOf": [bbox.clone(), {"type": "null"}]},
            "confidence": {"type": "number", "description": "image hits: how sure the decision is, 0..1"}}},
        "Retrieval": {"type": "object", "properties": {"hits": {"type": "array",
            "items": {"$ref": "#/components/schemas/Hit"}}}},
        "UsedConcept": {"type": "object", "properties": {
            "name": {"type": "string"}, "score": {"type": "number"},
            "via": {"type": "string", "enum": ["image", "text", "text+image", "explicit"]},
            "box": bbox, "image": {"type": "string"}}},
        "Rap": {"type": "object", "description": "what rap added: the concepts in the prompt",
            "properties": {
                "concepts": {"type": "array", "items": {"$ref": "#/components/schemas/UsedConcept"}},
                "mode": {"type": "string", "enum": ["multimodal", "text-only"]},
                "warnings": {"type": "array", "items": {"type": "string"}}}},
        "ChatCompletionRequest": {"type": "object", "required": ["messages"], "properties": {
            "model": {"type": "string"},
            "messages": {"type": "array", "items": {"type": "object", "required": ["role"], "properties": {
                "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
                "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "object",
                    "properties": {"type": {"type": "string", "enum": ["text", "image_url"]},
                        "text": {"type": "string"},
                        "image_url": {"type": "object", "properties": {"url": {"type": "string",
                            "description": "data:image/...;base64,... (http(s) only if the server allows it)"}}}}}}]}}}},
            "stream": {"type": "boolean"}, "max_tokens": {"type": "integer"},
            "max_completion_tokens": {"type": "integer"}, "temperature": {"type": "number"},
            "top_p": {"type": "number"}, "seed": {"type": "integer"},
            "stop": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}}},
        "ChatCompletion": {"type": "object", "description": "OpenAI's chat.completion (or, streamed, chat.completion.chunk events ending with [DONE]; the first chunk carries `rap`)",
            "properties": {"id": {"type": "string"}, "object": {"type": "string"},
                "created": {"type": "integer"}, "model": {"type": "string"},
                "choices": {"type": "array", "items": {"type": "object"}},
                "usage": {"type": "object"}, "rap": {"$ref": "#/components/schemas/Rap"}}},
        "LibraryFind": {"type": "object", "properties": {"concept": {"type": "string"},
            "total": {"type": "integer", "description": "photos where the concept is (all, not only those listed)"},
            "photos": {"type": "array", "items": {"type": "object", "properties": {
                "photo": {"type": "integer"}, "path": {"type": "string"}, "box": bbox,
                "score": {"type": "number"}, "confidence": {"type": "number"},
                "thumbnail": {"type": "string", "description": "URL of a thumbnail with the box drawn"}}}}}},
        "LibraryScan": {"type": "object", "required": ["folder"], "properties": {
            "folder": {"type": "string", "description": "a folder on the server's disk, inside its library_dirs"}}},
        "ScanReport": {"type": "object", "properties": {
            "found": {"type": "integer"}, "unchanged": {"type": "integer"}, "indexed": {"type": "integer"},
            "copied": {"type": "integer"}, "missing": {"type": "integer"}, "removed": {"type": "integer"},
            "unsupported": {"type": "integer"}, "failed": {"type": "array", "items": {"type": "array"}},
            "regions": {"type": "integer"}, "seconds": {"type": "number"}, "photos_per_sec": {"type": "number"}}},
        "ModelList": {"type": "object", "properties": {"object": {"type": "string"},
            "data": {"type": "array", "items": {"type": "object", "properties": {
                "id": {"type": "string"}, "object": {"type": "string"}, "owned_by": {"type": "string"}}}}}},
    })
}

fn error_response(description: &str) -> Value {
    json!({"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
}

/// The document for these operations.
pub fn document(ops: &[Op]) -> Value {
    let mut paths = serde_json::Map::new();
    for op in ops {
        let mut o = serde_json::Map::new();
        o.insert("summary".into(), json!(op.doc.summary));
        o.insert("tags".into(), json!([op.doc.tag]));
        o.insert(
            "operationId".into(),
            json!(format!(
                "{}_{}",
                op.method,
                op.path.trim_matches('/').replace(['/', '{', '}', '.'], "_")
            )),
        );
        let params: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        if !params.is_empty() {
            o.insert("parameters".into(), Value::Array(params));
        }
        match op.doc.body {
            Some(Body::Json(schema)) => {
                o.insert(
                    "requestBody".into(),
                    json!({"required": true, "content": {"application/json": {
                    "schema": {"$ref": format!("#/components/schemas/{schema}")}}}}),
                );
            }
            Some(Body::Multipart(fields)) => {
                let mut props = serde_json::Map::new();
                for (name, description) in fields {
                    let schema = if *name == "image" {
                        json!({"type": "array", "items": {"type": "string", "format": "binary"}, "description": description})
                    } else if *name == "alias" {
                        json!({"type": "array", "items": {"type": "string"}, "description": description})
                    } else {
                        json!({"type": "string", "description": description})
                    };
                    props.insert((*name).into(), schema);
                }
                o.insert(
                    "requestBody".into(),
                    json!({"required": true, "content": {"multipart/form-data": {
                    "schema": {"type": "object", "properties": props}}}}),
                );
            }
            None => {}
        }
        let mut responses = serde_json::Map::new();
        for (status, description, schema) in op.doc.responses {
            let r = if *status >= 400 {
                error_response(description)
            } else if schema.is_empty() {
                json!({"description": description})
            } else if *schema == "binary" {
                json!({"description": description, "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}})
            } else {
                json!({"description": description, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}})
            };
            responses.insert(status.to_string(), r);
        }
        if op.doc.auth {
            responses.insert(
                "401".into(),
                error_response("missing, invalid or revoked API key"),
            );
            o.insert("security".into(), json!([{"bearer": []}, {}]));
        }
        responses.insert(
            "400".into(),
            error_response("bad input (the message names what)"),
        );
        o.insert("responses".into(), Value::Object(responses));
        let entry = paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}));
        entry[op.method] = Value::Object(o);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "rap",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Retrieval-augmented personalization: remember a user's concepts from photos, find them in new photos, and answer with them (OpenAI-compatible chat). With API keys configured, every /v1 request needs `Authorization: Bearer KEY` and sees only its key's tenant.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}
