//! Request validation: JSON Schema for request bodies and query parameters.
