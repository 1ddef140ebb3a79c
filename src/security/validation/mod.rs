//! Request validation: JSON Schema for request bodies and query parameters.
//!
//! A [`RequestValidator`] is built once per config load from an optional body schema and an
//! optional query schema; both are compiled in [`RequestValidator::new`] and never again.
//!
//! Schemas are compiled with:
//! - **no reference retrieval**: a `$ref` (or `$schema`) that points outside the schema document
//!   (`https://…`, `file://…`, a relative file name) is refused by `new`; nothing is ever fetched;
//! - **`format` asserted**, not merely annotated (`email`, `uri`, `date-time`, `uuid`, …); an
//!   unknown format name is refused by `new` rather than silently ignored. `email` requires a
//!   domain with a dot (`user@localhost` fails) and refuses domain literals (`user@[127.0.0.1]`);
//! - **linear-time patterns**: `pattern`/`patternProperties` use the `regex` engine, so a schema
//!   cannot make a request take exponential time; look-around and back-references are refused by
//!   `new` (write several `allOf` patterns instead).
//!
//! Failures become [`FieldError`]s (`field` is a dotted path such as `user.emails[0]`) whose
//! messages are written here per kind of failure and never contain the submitted value. A schema
//! can replace the message with the non-standard keyword `x-message`, next to the constraint:
//! a string applies to every failing keyword of that schema object (except `required`,
//! `dependentRequired`, `additionalProperties` and `unevaluatedProperties`, whose failures name
//! another field), an object maps keyword names to messages
//! (`"x-message": {"pattern": "must not be blank", "required": "is needed"}`). Through a local
//! `$ref`, the referenced schema's `x-message` applies. `x-message` is refused in a schema with
//! embedded resources (`$id` below the root), where keyword locations are ambiguous.
//!
//! Query strings become a JSON object of strings before validation (a repeated key becomes an
//! array of strings), coerced where the query schema's top-level `properties.<name>.type` asks
//! for `integer`, `number`, `boolean` or `array` (see [`RequestValidator::validate_query`]).
//! Example schemas live in `examples/schemas/`.

mod query;
mod report;
#[cfg(test)]
mod tests;

use std::fmt;

use jsonschema::{EmailOptions, PatternOptions, Validator};
use serde_json::Value;

use self::query::QueryCoercions;
use self::report::{Messages, Mode};

/// Most field errors reported for one request.
pub const MAX_FIELD_ERRORS: usize = 20;

/// The compiled body and query schemas of one route. `Send + Sync`; share it behind an `Arc`.
pub struct RequestValidator {
    body: Option<CompiledSchema>,
    query: Option<QuerySchema>,
}

struct CompiledSchema {
    validator: Validator,
    messages: Messages,
}

struct QuerySchema {
    schema: CompiledSchema,
    coercions: QueryCoercions,
}

/// Why a request failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationFailure {
    /// A body schema is set but the Content-Type is not JSON (`application/json` or
    /// `application/*+json`, any parameters) → 415.
    #[error("unsupported media type: the request body must be JSON")]
    UnsupportedMediaType,
    /// The body is not valid JSON → 400. The message never quotes the body.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The body or query does not satisfy its schema → 400 with the details.
    #[error("request validation failed ({} errors)", .0.len())]
    Invalid(Vec<FieldError>),
}

impl ValidationFailure {
    /// The status code a proxy answers this failure with (415 or 400).
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::UnsupportedMediaType => http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::MalformedJson(_) | Self::Invalid(_) => http::StatusCode::BAD_REQUEST,
        }
    }
}

/// One failing field: `field` is a dotted path (`user.emails[0]`, `""` for the whole document),
/// `message` says what is wrong without quoting the submitted value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl RequestValidator {
    /// Compiles the schemas; either may be absent. `Err(message)` names the schema that is wrong
    /// (`"body_schema: …"` or `"query_schema: …"`) and why.
    pub fn new(body_schema: Option<&Value>, query_schema: Option<&Value>) -> Result<Self, String> {
        let body = body_schema
            .map(|schema| CompiledSchema::compile("body_schema", schema))
            .transpose()?;
        let query = query_schema
            .map(|schema| {
                check_query_root(schema).map_err(|e| format!("query_schema: {e}"))?;
                Ok::<_, String>(QuerySchema {
                    schema: CompiledSchema::compile("query_schema", schema)?,
                    coercions: QueryCoercions::from_schema(schema),
                })
            })
            .transpose()?;
        Ok(Self { body, query })
    }

    /// Whether the body must be buffered and passed to [`validate_body`](Self::validate_body).
    pub fn needs_body(&self) -> bool {
        self.body.is_some()
    }

    /// Validates the raw (percent-encoded) query string; `None` means no query, validated as `{}`.
    ///
    /// Each `key=value` pair is decoded (`+` is a space, then percent-decoding; invalid UTF-8
    /// becomes U+FFFD); a key without `=` has the value `""`; a repeated key becomes an array of
    /// strings. Where the schema's `properties.<name>.type` is (or, as a list, includes)
    /// `integer`, `number` or `boolean` and not `string`, a value that parses as such is
    /// converted (others stay strings and fail the type check); where it includes `array`, a
    /// single value becomes a one-element array and the items are converted by `items.type`.
    pub fn validate_query(&self, query: Option<&str>) -> Result<(), ValidationFailure> {
        let Some(schema) = &self.query else {
            return Ok(());
        };
        let instance = query::to_json(query.unwrap_or(""), &schema.coercions);
        schema.schema.check(&instance, Mode::Query)
    }

    /// Validates a buffered body; `content_type` is the request's Content-Type header value.
    ///
    /// Without a body schema, every body passes. With one: a Content-Type that is not JSON is
    /// [`UnsupportedMediaType`](ValidationFailure::UnsupportedMediaType), and so is a missing one
    /// with a non-empty body; an empty body is validated as `null` (which an object schema
    /// rejects with a field error saying a body is required).
    pub fn validate_body(
        &self,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<(), ValidationFailure> {
        let Some(schema) = &self.body else {
            return Ok(());
        };
        match content_type {
            Some(ct) if !is_json_media_type(ct) => {
                return Err(ValidationFailure::UnsupportedMediaType);
            }
            None if !body.is_empty() => return Err(ValidationFailure::UnsupportedMediaType),
            _ => {}
        }
        if body.is_empty() {
            return schema.check(&Value::Null, Mode::EmptyBody);
        }
        let instance: Value = serde_json::from_slice(body).map_err(malformed)?;
        schema.check(&instance, Mode::Body)
    }
}

impl fmt::Debug for RequestValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestValidator")
            .field("body_schema", &self.body.is_some())
            .field("query_schema", &self.query.is_some())
            .finish()
    }
}

impl CompiledSchema {
    fn compile(which: &str, schema: &Value) -> Result<Self, String> {
        let validator = jsonschema::options()
            .offline()
            .should_validate_formats(true)
            .should_ignore_unknown_formats(false)
            .with_pattern_options(PatternOptions::regex())
            .with_email_options(
                EmailOptions::default()
                    .with_required_tld()
                    .without_domain_literal(),
            )
            .build(schema)
            .map_err(|e| format!("{which}: {}", report::describe_build_error(&e)))?;
        let messages = Messages::collect(schema).map_err(|e| format!("{which}: {e}"))?;
        Ok(Self {
            validator,
            messages,
        })
    }

    fn check(&self, instance: &Value, mode: Mode) -> Result<(), ValidationFailure> {
        // The common case, a valid request, takes the fast path that builds no errors.
        if self.validator.is_valid(instance) {
            return Ok(());
        }
        let errors = report::field_errors(&self.validator, &self.messages, instance, mode);
        if errors.is_empty() {
            // Unreachable in practice; never let an invalid document through.
            return Err(ValidationFailure::Invalid(vec![FieldError {
                field: String::new(),
                message: "is invalid".to_owned(),
            }]));
        }
        Err(ValidationFailure::Invalid(errors))
    }
}

/// A query schema must accept an object: the query is always validated as one.
fn check_query_root(schema: &Value) -> Result<(), String> {
    let allows_object = match schema.get("type") {
        None => true,
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(types)) => types.iter().any(|t| t == "object"),
        Some(_) => true, // let the meta-schema check report it
    };
    if allows_object {
        Ok(())
    } else {
        Err(
            "the query is validated as an object of parameters, so \"type\" must be \"object\""
                .to_owned(),
        )
    }
}

/// `application/json` or `application/<anything>+json`, any parameters, any case.
fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let Some((ty, subtype)) = essence.split_once('/') else {
        return false;
    };
    if !ty.eq_ignore_ascii_case("application") {
        return false;
    }
    if subtype.eq_ignore_ascii_case("json") {
        return true;
    }
    // `vnd.api+json`: a non-empty name without spaces, then `+json`.
    match subtype.len().checked_sub("+json".len()) {
        Some(at) if at > 0 => {
            subtype
                .get(at..)
                .is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json"))
                && !subtype[..at].contains(|c: char| c.is_whitespace() || c == '/')
        }
        _ => false,
    }
}

/// serde_json's syntax and end-of-input messages are fixed phrases with a position; they never
/// quote the input. Any other kind gets a generic message to be sure.
fn malformed(e: serde_json::Error) -> ValidationFailure {
    use serde_json::error::Category;
    let message = match e.classify() {
        Category::Syntax | Category::Eof => e.to_string(),
        Category::Data | Category::Io => {
            format!("invalid JSON at line {} column {}", e.line(), e.column())
        }
    };
    ValidationFailure::MalformedJson(message)
}
