//! Turning jsonschema errors into [`FieldError`]s: field paths, our own messages (never the
//! submitted value), `x-message` overrides, de-duplication, a stable order and the cap.

use std::collections::HashMap;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::paths::LocationSegment;
use jsonschema::{JsonType, ValidationError, Validator};
use serde_json::Value;

use super::{FieldError, MAX_FIELD_ERRORS};

/// Raw errors looked at per request, to bound the work on a document with very many failures.
const MAX_RAW_ERRORS: usize = 256;
/// Longest `field` reported; a longer one (an attacker's property name) is cut.
const MAX_FIELD_CHARS: usize = 128;
/// Longest rendering of `enum`/`const` values quoted from the schema in a message.
const MAX_OPTIONS_CHARS: usize = 100;

/// What is being validated, for the few messages that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Body,
    /// An empty body, validated as `null`.
    EmptyBody,
    /// A query string turned into an object of strings.
    Query,
}

/// The `x-message`s of a schema, by the JSON pointer of the schema object holding them.
#[derive(Debug, Default)]
pub(super) struct Messages(HashMap<String, XMessage>);

#[derive(Debug)]
enum XMessage {
    /// Applies to every failing keyword of the schema object, except those that report another
    /// field (`required`, `additionalProperties`, …).
    All(String),
    ByKeyword(HashMap<String, String>),
}

/// Keywords whose value maps names to subschemas.
const SCHEMA_MAPS: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
    "dependencies",
];
/// Keywords whose value is data, not schemas.
const DATA_KEYWORDS: &[&str] = &[
    "enum",
    "const",
    "default",
    "examples",
    "required",
    "x-message",
];

impl Messages {
    /// Finds every `x-message` in the schema; refuses one that is neither a string nor an object
    /// of strings.
    pub(super) fn collect(schema: &Value) -> Result<Self, String> {
        let mut messages = Self::default();
        let mut pointer = String::new();
        let mut embedded_resource = false;
        messages.walk(schema, &mut pointer, &mut embedded_resource)?;
        if embedded_resource && !messages.0.is_empty() {
            // jsonschema reports keyword locations inside an embedded resource relative to it
            // (`/type`, not `/$defs/x/type`): a lookup could take another schema's message.
            return Err(
                "x-message cannot be used in a schema with embedded resources \
                        (`$id` below the root); use local `$ref`s to `$defs` instead"
                    .to_owned(),
            );
        }
        Ok(messages)
    }

    fn walk(
        &mut self,
        schema: &Value,
        pointer: &mut String,
        embedded_resource: &mut bool,
    ) -> Result<(), String> {
        let Value::Object(object) = schema else {
            return Ok(());
        };
        if !pointer.is_empty() && object.get("$id").is_some_and(Value::is_string) {
            *embedded_resource = true;
        }
        if let Some(message) = object.get("x-message") {
            let message = match message {
                Value::String(text) => XMessage::All(text.clone()),
                Value::Object(by_keyword) => XMessage::ByKeyword(
                    by_keyword
                        .iter()
                        .map(|(keyword, text)| match text {
                            Value::String(text) => Ok((keyword.clone(), text.clone())),
                            _ => Err(x_message_error(pointer)),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                _ => return Err(x_message_error(pointer)),
            };
            self.0.insert(pointer.clone(), message);
        }
        for (keyword, value) in object {
            if DATA_KEYWORDS.contains(&keyword.as_str()) {
                continue;
            }
            let len = pointer.len();
            push_segment(pointer, keyword);
            match value {
                Value::Object(map) if SCHEMA_MAPS.contains(&keyword.as_str()) => {
                    for (name, subschema) in map {
                        let len = pointer.len();
                        push_segment(pointer, name);
                        self.walk(subschema, pointer, embedded_resource)?;
                        pointer.truncate(len);
                    }
                }
                Value::Object(_) => self.walk(value, pointer, embedded_resource)?,
                Value::Array(items) => {
                    for (index, item) in items.iter().enumerate() {
                        let len = pointer.len();
                        pointer.push('/');
                        pointer.push_str(&index.to_string());
                        self.walk(item, pointer, embedded_resource)?;
                        pointer.truncate(len);
                    }
                }
                _ => {}
            }
            pointer.truncate(len);
        }
        Ok(())
    }

    /// The `x-message` for the failing keyword at `schema_path` (a JSON pointer whose last
    /// segment is the keyword). `child` is set, to the keyword's name, for keywords whose
    /// failure names another field than the schema object's (`required`,
    /// `additionalProperties`, …): only an `x-message` object naming that keyword applies.
    fn lookup(&self, schema_path: &str, child: Option<&str>) -> Option<&str> {
        if self.0.is_empty() {
            return None;
        }
        let (parent, keyword) = schema_path.rsplit_once('/')?;
        match (self.0.get(parent)?, child) {
            (XMessage::All(text), None) => Some(text),
            (XMessage::All(_), Some(_)) => None,
            (XMessage::ByKeyword(map), child) => {
                map.get(child.unwrap_or(keyword)).map(String::as_str)
            }
        }
    }
}

fn x_message_error(pointer: &str) -> String {
    let at = if pointer.is_empty() { "/" } else { pointer };
    format!("x-message at {at} must be a string or an object of strings")
}

/// Appends `/segment` with JSON pointer escaping (`~` → `~0`, `/` → `~1`).
fn push_segment(pointer: &mut String, segment: &str) {
    pointer.push('/');
    for c in segment.chars() {
        match c {
            '~' => pointer.push_str("~0"),
            '/' => pointer.push_str("~1"),
            c => pointer.push(c),
        }
    }
}

/// All field errors of an invalid `instance`: de-duplicated, sorted by field (keeping the
/// validator's order within a field), at most [`MAX_FIELD_ERRORS`].
pub(super) fn field_errors(
    validator: &Validator,
    messages: &Messages,
    instance: &Value,
    mode: Mode,
) -> Vec<FieldError> {
    let mut raw = Vec::new();
    for error in validator.iter_errors(instance).take(MAX_RAW_ERRORS) {
        describe(&error, messages, instance, mode, &mut raw);
    }
    raw.sort_by(|a, b| a.field.cmp(&b.field));
    let mut errors: Vec<FieldError> = Vec::with_capacity(raw.len().min(MAX_FIELD_ERRORS));
    for error in raw {
        if errors.len() == MAX_FIELD_ERRORS {
            break;
        }
        if !errors.contains(&error) {
            errors.push(error);
        }
    }
    errors
}

fn describe(
    error: &ValidationError<'_>,
    messages: &Messages,
    instance: &Value,
    mode: Mode,
    out: &mut Vec<FieldError>,
) {
    let path = error.instance_path();
    let schema_path = error.schema_path().as_str();
    let field = || field_path(instance, path.segments());
    match error.kind() {
        ValidationErrorKind::Required { property } => {
            let name = property
                .as_str()
                .map_or_else(|| property.to_string(), str::to_owned);
            out.push(FieldError {
                field: child_field(&field(), &name),
                message: messages
                    .lookup(schema_path, Some("required"))
                    .unwrap_or("is required")
                    .to_owned(),
            });
        }
        kind @ (ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected }) => {
            let message = messages
                .lookup(schema_path, Some(kind.keyword()))
                .unwrap_or("is not allowed");
            let parent = field();
            for name in unexpected.iter().take(MAX_RAW_ERRORS) {
                out.push(FieldError {
                    field: child_field(&parent, name),
                    message: message.to_owned(),
                });
            }
        }
        ValidationErrorKind::FalseSchema if additional_false(error, instance).is_some() => {
            let message = messages
                .lookup(schema_path, Some("additionalProperties"))
                .unwrap_or("is not allowed");
            let parent = field();
            let object = additional_false(error, instance).into_iter().flatten();
            for (name, _) in object.take(MAX_RAW_ERRORS) {
                out.push(FieldError {
                    field: child_field(&parent, name),
                    message: message.to_owned(),
                });
            }
        }
        kind => {
            let message = match messages.lookup(schema_path, None) {
                Some(text) => text.to_owned(),
                None => message(kind, error.instance(), path.as_str(), mode),
            };
            out.push(FieldError {
                field: field(),
                message,
            });
        }
    }
}

/// `additionalProperties: false` without `properties` fails as a false schema located at the
/// object, reporting only its first member's value: then this is the object, to name every
/// member. (A property named `additionalProperties` whose schema is `false` also fails at
/// `…/additionalProperties`, but located at and reporting the property's value.)
fn additional_false<'v>(
    error: &ValidationError<'_>,
    instance: &'v Value,
) -> Option<&'v serde_json::Map<String, Value>> {
    if !error
        .schema_path()
        .as_str()
        .ends_with("/additionalProperties")
    {
        return None;
    }
    let object = path_value(instance, error.instance_path().segments())?;
    // A value never equals the object that contains it.
    (object != error.instance().as_ref())
        .then(|| object.as_object())
        .flatten()
}

/// Our message for a failure. It may quote the schema (limits, formats, allowed values), never
/// the instance: only the instance's JSON type is looked at.
fn message(kind: &ValidationErrorKind, instance: &Value, path: &str, mode: Mode) -> String {
    use ValidationErrorKind as K;
    match kind {
        K::Type { kind } => {
            let mut expected: Vec<JsonType> = match kind {
                TypeKind::Single(ty) => vec![*ty],
                TypeKind::Multiple(set) => set.iter().collect(),
            };
            // "a string or null" reads better than "null or a string".
            expected.sort_by_key(|ty| *ty == JsonType::Null);
            if mode == Mode::EmptyBody && path.is_empty() {
                "a JSON body is required".to_owned()
            } else if mode == Mode::Query
                && instance.is_array()
                && !expected.contains(&JsonType::Array)
                && path.matches('/').count() == 1
            {
                "must not be repeated".to_owned()
            } else {
                let names: Vec<&str> = expected.iter().map(|ty| type_name(*ty)).collect();
                format!("must be {}", join_or(&names))
            }
        }
        K::MinLength { limit } => format!("must be at least {}", count(*limit, "character")),
        K::MaxLength { limit } => format!("must be at most {}", count(*limit, "character")),
        K::MinItems { limit } => format!("must have at least {}", count(*limit, "item")),
        K::MaxItems { limit } => format!("must have at most {}", count(*limit, "item")),
        K::MinProperties { limit } => {
            format!("must have at least {}", count(*limit, "property"))
        }
        K::MaxProperties { limit } => {
            format!("must have at most {}", count(*limit, "property"))
        }
        K::Minimum { limit } => format!("must be at least {limit}"),
        K::Maximum { limit } => format!("must be at most {limit}"),
        K::ExclusiveMinimum { limit } => format!("must be greater than {limit}"),
        K::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        K::MultipleOf { multiple_of, .. } => format!("must be a multiple of {multiple_of}"),
        K::Pattern { .. } => "does not have the required format".to_owned(),
        K::BacktrackLimitExceeded { .. } | K::RegexEngineFailure { .. } => {
            "could not be checked against the required format".to_owned()
        }
        K::Format { format } => format_message(format),
        K::Enum { options } => match options.as_array().and_then(|list| quoted_list(list)) {
            Some(list) => format!("must be one of {list}"),
            None => "must be one of the allowed values".to_owned(),
        },
        K::Constant { expected_value } => match quoted(expected_value) {
            Some(value) => format!("must be {value}"),
            None => "must be the allowed value".to_owned(),
        },
        K::UniqueItems => "must not contain duplicate items".to_owned(),
        K::Contains => "must contain at least one matching item".to_owned(),
        K::AdditionalItems { limit } => {
            format!("must have at most {}", count(*limit as u64, "item"))
        }
        K::UnevaluatedItems { .. } => "has items that are not allowed".to_owned(),
        K::AnyOf { .. } | K::OneOfNotValid { .. } => {
            "does not match any of the allowed forms".to_owned()
        }
        K::OneOfMultipleValid { .. } => "matches more than one of the allowed forms".to_owned(),
        K::Not { .. } | K::FalseSchema => "is not allowed".to_owned(),
        K::PropertyNames { .. } => "has a property name that is not allowed".to_owned(),
        K::ContentEncoding { content_encoding } => {
            format!("must be valid {content_encoding}")
        }
        K::FromUtf8 { .. } => "must decode to valid UTF-8".to_owned(),
        K::ContentMediaType { content_media_type } => {
            format!("must be valid {content_media_type}")
        }
        // Handled in `describe`; kept here so the match stays exhaustive.
        K::Required { .. } => "is required".to_owned(),
        K::AdditionalProperties { .. } | K::UnevaluatedProperties { .. } => {
            "is not allowed".to_owned()
        }
        // No custom keywords are registered; their message could quote the value, so don't use it.
        K::Custom { .. } => "is invalid".to_owned(),
        K::Referencing(_) => "could not be checked (schema reference error)".to_owned(),
    }
}

fn type_name(ty: JsonType) -> &'static str {
    match ty {
        JsonType::Array => "an array",
        JsonType::Boolean => "a boolean",
        JsonType::Integer => "an integer",
        JsonType::Null => "null",
        JsonType::Number => "a number",
        JsonType::Object => "an object",
        JsonType::String => "a string",
    }
}

fn join_or(names: &[&str]) -> String {
    match names {
        [] => "of another type".to_owned(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn count(n: u64, noun: &str) -> String {
    match (n, noun) {
        (1, _) => format!("1 {noun}"),
        (_, "property") => format!("{n} properties"),
        _ => format!("{n} {noun}s"),
    }
}

/// A schema value rendered as JSON when short enough to put in a message.
fn quoted(value: &Value) -> Option<String> {
    quoted_list(std::slice::from_ref(value))
}

/// Schema values rendered as JSON, `, `-separated, when short enough to put in a message.
fn quoted_list(values: &[Value]) -> Option<String> {
    let mut text = String::new();
    for value in values {
        if !text.is_empty() {
            text.push_str(", ");
        }
        text.push_str(&serde_json::to_string(value).ok()?);
        if text.len() > MAX_OPTIONS_CHARS {
            return None;
        }
    }
    Some(text)
}

fn format_message(format: &str) -> String {
    let what = match format {
        "email" => "email address",
        "idn-email" => "internationalized email address",
        "uri" => "URI",
        "uri-reference" => "URI reference",
        "iri" => "IRI",
        "iri-reference" => "IRI reference",
        "uri-template" => "URI template",
        "date-time" => "date-time (RFC 3339, e.g. 2024-01-31T12:00:00Z)",
        "date" => "date (YYYY-MM-DD)",
        "time" => "time (RFC 3339, e.g. 12:00:00Z)",
        "duration" => "duration (ISO 8601, e.g. P1DT2H)",
        "uuid" => "UUID",
        "ipv4" => "IPv4 address",
        "ipv6" => "IPv6 address",
        "hostname" => "hostname",
        "idn-hostname" => "internationalized hostname",
        "regex" => "regular expression",
        "json-pointer" => "JSON pointer",
        "relative-json-pointer" => "relative JSON pointer",
        other => other,
    };
    format!("must be a valid {what}")
}

/// `/user/emails/0` → `user.emails[0]`, deciding index or key by walking the instance (an object
/// may have a key `"0"`). Keys with `.`, `[`, `]` or `"` are written `["a.b"]`.
fn field_path<'a>(instance: &Value, segments: impl Iterator<Item = LocationSegment<'a>>) -> String {
    let mut field = String::new();
    let mut current = Some(instance);
    for segment in segments {
        match (segment, current) {
            (LocationSegment::Index(index), Some(Value::Array(items))) => {
                field.push('[');
                field.push_str(&index.to_string());
                field.push(']');
                current = items.get(index);
            }
            (LocationSegment::Index(index), _) => {
                let key = index.to_string();
                current = current.and_then(|value| value.get(&key));
                push_key(&mut field, &key);
            }
            (LocationSegment::Property(key), _) => {
                current = current.and_then(|value| value.get(key.as_ref()));
                push_key(&mut field, &key);
            }
        }
        if field.len() > MAX_FIELD_CHARS * 4 {
            break;
        }
    }
    truncate_field(field)
}

/// The value at an instance location.
fn path_value<'v, 'a>(
    instance: &'v Value,
    segments: impl Iterator<Item = LocationSegment<'a>>,
) -> Option<&'v Value> {
    segments
        .into_iter()
        .try_fold(instance, |value, segment| match (segment, value) {
            (LocationSegment::Index(index), Value::Array(items)) => items.get(index),
            (LocationSegment::Index(index), _) => value.get(index.to_string()),
            (LocationSegment::Property(key), _) => value.get(key.as_ref()),
        })
}

fn child_field(parent: &str, name: &str) -> String {
    let mut field = parent.to_owned();
    push_key(&mut field, name);
    truncate_field(field)
}

fn push_key(field: &mut String, key: &str) {
    if !key.is_empty() && !key.contains(['.', '[', ']', '"']) {
        if !field.is_empty() {
            field.push('.');
        }
        field.push_str(key);
    } else {
        field.push('[');
        field.push_str(&serde_json::to_string(key).unwrap_or_default());
        field.push(']');
    }
}

fn truncate_field(field: String) -> String {
    if field.chars().count() <= MAX_FIELD_CHARS {
        return field;
    }
    let mut cut: String = field.chars().take(MAX_FIELD_CHARS).collect();
    cut.push('…');
    cut
}

/// Why `new` refuses a schema, written for whoever edits the config.
pub(super) fn describe_build_error(error: &ValidationError<'_>) -> String {
    let location = error.instance_path().as_str();
    let at = if location.is_empty() {
        String::new()
    } else {
        format!(" at {location}")
    };
    match error.kind() {
        ValidationErrorKind::Referencing(e) => format!(
            "unresolvable reference{at}: {e} (schemas must be self-contained: \
             remote and file references are never fetched)"
        ),
        ValidationErrorKind::Custom { message, .. } if message.starts_with("Unknown format") => {
            let format = error.instance().as_str().unwrap_or_default();
            format!(
                "unsupported format {format:?}{at} (supported: date-time, date, time, duration, \
                 email, hostname, ipv4, ipv6, uri, uri-reference, iri, iri-reference, \
                 uri-template, uuid, json-pointer, relative-json-pointer, regex; uuid and \
                 duration need draft 2019-09 or later)"
            )
        }
        ValidationErrorKind::Format { format } if format == "regex" => format!(
            "invalid regular expression{at}: {error} (patterns use the linear-time `regex` \
             engine: no look-around or back-references; use several `allOf` patterns instead)"
        ),
        _ => format!("invalid schema{at}: {error}"),
    }
}
