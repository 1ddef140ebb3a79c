//! Request validation: JSON Schema for request bodies and query parameters.

/// Placeholder until the validation module lands.
pub struct RequestValidator;

pub enum ValidationFailure {
    UnsupportedMediaType,
    MalformedJson(String),
    Invalid(Vec<FieldError>),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl RequestValidator {
    pub fn new(
        _body_schema: Option<&serde_json::Value>,
        _query_schema: Option<&serde_json::Value>,
    ) -> Result<Self, String> {
        Ok(Self)
    }
    pub fn needs_body(&self) -> bool {
        false
    }
    pub fn validate_query(&self, _query: Option<&str>) -> Result<(), ValidationFailure> {
        Ok(())
    }
    pub fn validate_body(
        &self,
        _content_type: Option<&str>,
        _body: &[u8],
    ) -> Result<(), ValidationFailure> {
        Ok(())
    }
}
