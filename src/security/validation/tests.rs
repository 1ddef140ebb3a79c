use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

const LOGIN: &str = include_str!("../../../examples/schemas/login.json");
const REGISTER: &str = include_str!("../../../examples/schemas/register.json");
const CAMPAIGN: &str = include_str!("../../../examples/schemas/campaign.json");
const AI_QUERY: &str = include_str!("../../../examples/schemas/ai_query.json");
const ITEMS_QUERY: &str = include_str!("../../../examples/schemas/items_query.json");

const JSON: Option<&str> = Some("application/json");
const GOOD_PASSWORD: &str = "Correct#Horse9";

fn schema(text: &str) -> Value {
    serde_json::from_str(text).expect("example schema is JSON")
}

fn body_validator(text: &str) -> RequestValidator {
    RequestValidator::new(Some(&schema(text)), None).expect("example schema compiles")
}

fn inline(body_schema: Value) -> RequestValidator {
    RequestValidator::new(Some(&body_schema), None).expect("schema compiles")
}

fn fe(field: &str, message: &str) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.to_owned(),
    }
}

fn check(validator: &RequestValidator, body: &Value) -> Result<(), ValidationFailure> {
    validator.validate_body(JSON, body.to_string().as_bytes())
}

/// The field errors of a body that must be invalid.
fn errors(validator: &RequestValidator, body: &Value) -> Vec<FieldError> {
    match check(validator, body) {
        Err(ValidationFailure::Invalid(errors)) => errors,
        other => panic!("expected Invalid for {body}, got {other:?}"),
    }
}

fn query_errors(validator: &RequestValidator, query: &str) -> Vec<FieldError> {
    match validator.validate_query(Some(query)) {
        Err(ValidationFailure::Invalid(errors)) => errors,
        other => panic!("expected Invalid for {query:?}, got {other:?}"),
    }
}

#[test]
fn validator_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RequestValidator>();
}

#[test]
fn example_schemas_all_compile() {
    for text in [LOGIN, REGISTER, CAMPAIGN, AI_QUERY] {
        assert!(body_validator(text).needs_body());
    }
    let items = RequestValidator::new(None, Some(&schema(ITEMS_QUERY))).unwrap();
    assert!(!items.needs_body());
    let nothing = RequestValidator::new(None, None).unwrap();
    assert!(!nothing.needs_body());
    assert_eq!(nothing.validate_query(Some("anything=1")), Ok(()));
    assert_eq!(
        nothing.validate_body(Some("text/plain"), b"not json"),
        Ok(())
    );
}

// ---- login / register ------------------------------------------------------------------------

#[test]
fn login_accepts_a_good_request() {
    let v = body_validator(LOGIN);
    let body = json!({"email": "ada@example.com", "password": GOOD_PASSWORD});
    assert_eq!(check(&v, &body), Ok(()));
    // Unknown fields are not refused by the seed rules.
    let body = json!({"email": "ada@example.com", "password": GOOD_PASSWORD, "remember": true});
    assert_eq!(check(&v, &body), Ok(()));
}

#[test]
fn login_password_rules_each_fail_with_their_own_message() {
    let v = body_validator(LOGIN);
    let cases = [
        ("Short#Pass9", "must be at least 12 characters"), // 11 characters
        ("no-upper-case#9", "Password must contain uppercase letter"),
        ("No-Digits-Here#", "Password must contain number"),
        (
            "NoSymbolsHere99",
            "Password must contain special character (!@#$%^&*)",
        ),
    ];
    for (password, message) in cases {
        let body = json!({"email": "ada@example.com", "password": password});
        assert_eq!(
            errors(&v, &body),
            vec![fe("password", message)],
            "{password}"
        );
    }
    assert_eq!("Short#Pass9".chars().count(), 11);
    // Several broken rules are all reported, in a stable order.
    let body = json!({"email": "ada@example.com", "password": "short"});
    assert_eq!(
        errors(&v, &body),
        vec![
            fe("password", "must be at least 12 characters"),
            fe("password", "Password must contain uppercase letter"),
            fe("password", "Password must contain number"),
            fe(
                "password",
                "Password must contain special character (!@#$%^&*)"
            ),
        ]
    );
    // Exactly 12 characters with every class passes.
    let body = json!({"email": "ada@example.com", "password": "Abcdefghij1!"});
    assert_eq!(check(&v, &body), Ok(()));
}

#[test]
fn login_email_rules() {
    let v = body_validator(LOGIN);
    for email in [
        "not-an-email",
        "ada@",
        "@example.com",
        "ada@localhost",
        "ada@[127.0.0.1]",
    ] {
        let body = json!({"email": email, "password": GOOD_PASSWORD});
        assert_eq!(
            errors(&v, &body),
            vec![fe("email", "must be a valid email address")],
            "{email}"
        );
    }
    let long = format!("{}@example.com", "a".repeat(243)); // 255 characters
    let body = json!({"email": long, "password": GOOD_PASSWORD});
    assert!(errors(&v, &body).contains(&fe("email", "must be at most 254 characters")));
}

#[test]
fn login_missing_and_mistyped_fields() {
    let v = body_validator(LOGIN);
    assert_eq!(
        errors(&v, &json!({"email": "ada@example.com"})),
        vec![fe("password", "is required")]
    );
    assert_eq!(
        errors(&v, &json!({})),
        vec![fe("email", "is required"), fe("password", "is required")]
    );
    assert_eq!(
        errors(
            &v,
            &json!({"email": "ada@example.com", "password": 123456789012_i64})
        ),
        vec![fe("password", "must be a string")]
    );
    assert_eq!(
        errors(
            &v,
            &json!({"email": ["ada@example.com"], "password": GOOD_PASSWORD})
        ),
        vec![fe("email", "must be a string")]
    );
    assert_eq!(
        errors(&v, &json!(["ada@example.com", GOOD_PASSWORD])),
        vec![fe("", "must be an object")]
    );
}

#[test]
fn register_has_the_login_rules_and_an_optional_name() {
    let v = body_validator(REGISTER);
    let good = json!({"email": "ada@example.com", "password": GOOD_PASSWORD});
    assert_eq!(check(&v, &good), Ok(()));
    let named = json!({"email": "ada@example.com", "password": GOOD_PASSWORD, "name": "Ada"});
    assert_eq!(check(&v, &named), Ok(()));
    assert_eq!(
        errors(
            &v,
            &json!({"email": "ada@example.com", "password": GOOD_PASSWORD, "name": 7})
        ),
        vec![fe("name", "must be a string")]
    );
    assert_eq!(
        errors(&v, &json!({"email": "nope", "password": "nouppercase1!"})),
        vec![
            fe("email", "must be a valid email address"),
            fe("password", "Password must contain uppercase letter"),
        ]
    );
    assert_eq!(errors(&v, &json!({"name": "Ada"})).len(), 2);
}

// ---- campaign / AI query ---------------------------------------------------------------------

#[test]
fn campaign_name_rules() {
    let v = body_validator(CAMPAIGN);
    assert_eq!(check(&v, &json!({"name": "Spring sale"})), Ok(()));
    assert_eq!(check(&v, &json!({"name": "x".repeat(255)})), Ok(()));
    assert_eq!(check(&v, &json!({"name": "  padded  "})), Ok(()));
    assert_eq!(
        errors(&v, &json!({"name": ""})),
        vec![
            fe("name", "must be at least 1 character"),
            fe("name", "must not be blank")
        ]
    );
    assert_eq!(
        errors(&v, &json!({"name": " \t "})),
        vec![fe("name", "must not be blank")]
    );
    assert_eq!(
        errors(&v, &json!({"name": "x".repeat(256)})),
        vec![fe("name", "must be at most 255 characters")]
    );
    assert_eq!(errors(&v, &json!({})), vec![fe("name", "is required")]);
    assert_eq!(
        errors(&v, &json!({"name": null})),
        vec![fe("name", "must be a string")]
    );
}

#[test]
fn ai_query_rules() {
    let v = body_validator(AI_QUERY);
    assert_eq!(check(&v, &json!({"query": "What is rampart?"})), Ok(()));
    assert_eq!(check(&v, &json!({"query": "q", "model": "small"})), Ok(()));
    assert_eq!(check(&v, &json!({"query": "é".repeat(1000)})), Ok(()));
    assert_eq!(
        errors(&v, &json!({"query": "x".repeat(1001)})),
        vec![fe("query", "must be at most 1000 characters")]
    );
    assert_eq!(
        errors(&v, &json!({"query": ""})),
        vec![fe("query", "must be at least 1 character")]
    );
    assert_eq!(
        errors(&v, &json!({"model": "small"})),
        vec![fe("query", "is required")]
    );
    assert_eq!(
        errors(&v, &json!({"query": "q", "model": 5})),
        vec![fe("model", "must be a string")]
    );
}

// ---- query parameters --------------------------------------------------------------------------

#[test]
fn items_query_rules() {
    let v = RequestValidator::new(None, Some(&schema(ITEMS_QUERY))).unwrap();
    for good in [
        None,
        Some(""),
        Some("limit=10"),
        Some("limit=1&offset=0&q=hello+world"),
        Some("limit=100&offset=999999&q=caf%C3%A9%20%26%20bar"),
        Some("unknown=whatever"),
        Some("q="),
    ] {
        assert_eq!(v.validate_query(good), Ok(()), "{good:?}");
    }
    let cases = [
        ("limit=0", fe("limit", "must be at least 1")),
        ("limit=101", fe("limit", "must be at most 100")),
        ("limit=abc", fe("limit", "must be an integer")),
        ("limit=1.5", fe("limit", "must be an integer")),
        ("limit=", fe("limit", "must be an integer")),
        ("offset=-1", fe("offset", "must be at least 0")),
        ("limit=1&limit=2", fe("limit", "must not be repeated")),
        ("limit=5&%6Cimit=6", fe("limit", "must not be repeated")),
    ];
    for (query, error) in cases {
        assert_eq!(query_errors(&v, query), vec![error], "{query}");
    }
    let long_q = format!("q={}", "%41".repeat(201)); // 201 decoded characters
    assert_eq!(
        query_errors(&v, &long_q),
        vec![fe("q", "must be at most 200 characters")]
    );
    let ok_q = format!("q={}", "+".repeat(200)); // 200 spaces
    assert_eq!(v.validate_query(Some(&ok_q)), Ok(()));
    assert_eq!(
        query_errors(&v, "offset=x&limit=0"),
        vec![
            fe("limit", "must be at least 1"),
            fe("offset", "must be an integer")
        ]
    );
}

#[test]
fn query_coercion_of_booleans_numbers_and_arrays() {
    let query_schema = json!({
        "type": "object",
        "required": ["active"],
        "properties": {
            "active": {"type": "boolean"},
            "ratio": {"type": "number", "maximum": 1},
            "ids": {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 3},
            "tag": {"type": "array", "items": {"type": "string", "enum": ["a", "b c"]}},
        },
        "additionalProperties": false,
    });
    let v = RequestValidator::new(None, Some(&query_schema)).unwrap();
    for good in [
        "active=true",
        "active=false&ratio=0.25",
        "active=true&ratio=1",
        "active=true&ids=1",
        "active=true&ids=1&ids=2&ids=3",
        "active=true&tag=b+c&tag=a",
        "active=true&tag=b%20c",
    ] {
        assert_eq!(v.validate_query(Some(good)), Ok(()), "{good}");
    }
    assert_eq!(
        v.validate_query(None),
        Err(ValidationFailure::Invalid(vec![fe(
            "active",
            "is required"
        )]))
    );
    assert_eq!(
        query_errors(&v, "active=yes"),
        vec![fe("active", "must be a boolean")]
    );
    assert_eq!(
        query_errors(&v, "active=true&ratio=1.5"),
        vec![fe("ratio", "must be at most 1")]
    );
    assert_eq!(
        query_errors(&v, "active=true&ids=0"),
        vec![fe("ids[0]", "must be at least 1")]
    );
    assert_eq!(
        query_errors(&v, "active=true&ids=1&ids=x"),
        vec![fe("ids[1]", "must be an integer")]
    );
    assert_eq!(
        query_errors(&v, "active=true&ids=1&ids=2&ids=3&ids=4"),
        vec![fe("ids", "must have at most 3 items")]
    );
    assert_eq!(
        query_errors(&v, "active=true&tag=c"),
        vec![fe("tag[0]", r#"must be one of "a", "b c""#)]
    );
    assert_eq!(
        query_errors(&v, "active=true&debug=1"),
        vec![fe("debug", "is not allowed")]
    );
}

#[test]
fn a_query_schema_must_describe_an_object() {
    let err = RequestValidator::new(None, Some(&json!({"type": "string"}))).unwrap_err();
    assert!(err.starts_with("query_schema: "), "{err}");
    assert!(RequestValidator::new(None, Some(&json!({"type": ["object", "null"]}))).is_ok());
}

// ---- media type, empty and malformed bodies ----------------------------------------------------

#[test]
fn only_json_media_types_are_accepted() {
    let v = body_validator(AI_QUERY);
    let body = br#"{"query": "hi"}"#;
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/vnd.api+json",
        "application/problem+JSON ; charset=utf-8",
        " application/json ",
    ] {
        assert_eq!(v.validate_body(Some(ct), body), Ok(()), "{ct}");
    }
    for ct in [
        "text/plain",
        "text/json",
        "application/jsonx",
        "application/+json",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json+xml",
        "",
        "json",
    ] {
        assert_eq!(
            v.validate_body(Some(ct), body),
            Err(ValidationFailure::UnsupportedMediaType),
            "{ct}"
        );
    }
    assert_eq!(
        v.validate_body(None, body),
        Err(ValidationFailure::UnsupportedMediaType)
    );
    assert_eq!(
        ValidationFailure::UnsupportedMediaType.status(),
        http::StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
}

#[test]
fn an_empty_body_is_validated_as_null() {
    let v = body_validator(LOGIN);
    let expected = Err(ValidationFailure::Invalid(vec![fe(
        "",
        "a JSON body is required",
    )]));
    assert_eq!(v.validate_body(JSON, b""), expected);
    assert_eq!(v.validate_body(None, b""), expected);
    // An explicit non-JSON type is still refused.
    assert_eq!(
        v.validate_body(Some("text/plain"), b""),
        Err(ValidationFailure::UnsupportedMediaType)
    );
    // A schema that allows no body accepts it.
    let optional = inline(json!({"type": ["object", "null"]}));
    assert_eq!(optional.validate_body(None, b""), Ok(()));
}

#[test]
fn malformed_json_is_reported_without_echoing_the_body() {
    let v = body_validator(LOGIN);
    for body in [
        r#"{"email": "ada@example.com", "password": "Sup3r$ecretValue"#.as_bytes(),
        br#"{"password": "Sup3r$ecretValue",}"#,
        br#"{"password": "Sup3r$ecretValue"} trailing Sup3r$ecretValue"#,
        b"Sup3r$ecretValue",
        b"{\"password\": \"Sup3r$ecret\xffValue\"}",
        b"   ",
    ] {
        match v.validate_body(JSON, body) {
            Err(failure @ ValidationFailure::MalformedJson(_)) => {
                let ValidationFailure::MalformedJson(message) = &failure else {
                    unreachable!()
                };
                assert!(!message.contains("ecret"), "{message}");
                assert!(!failure.to_string().contains("ecret"));
                assert_eq!(failure.status(), http::StatusCode::BAD_REQUEST);
            }
            other => panic!("expected MalformedJson, got {other:?}"),
        }
    }
}

#[test]
fn deeply_nested_json_is_refused_not_overflowed() {
    let v = inline(json!({}));
    let body = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        v.validate_body(JSON, body.as_bytes()),
        Err(ValidationFailure::MalformedJson(_))
    ));
}

// ---- no message contains the submitted value ---------------------------------------------------

fn assert_never_echoed(failure: &ValidationFailure, secret: &str) {
    let rendered = format!("{failure} {failure:?}");
    assert!(
        !rendered.contains(secret),
        "{secret:?} echoed in {rendered}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn messages_never_contain_the_password(
        password in prop_oneof![
            "[a-zA-Z0-9!@#$%^&*]{6,40}",
            "[a-z]{6,20}",
            "\\PC{6,30}",
        ],
        email_ok in any::<bool>(),
    ) {
        let email = if email_ok { "ada@example.com" } else { "ada" };
        for text in [LOGIN, REGISTER] {
            let v = body_validator(text);
            // As the password, and in every other place a value can go.
            for body in [
                json!({"email": email, "password": password}),
                json!({"email": password, "password": password}),
                json!({"email": email, "password": [password]}),
                json!({"email": email, "password": {"nested": password}}),
                json!({"email": email, "password": password, "name": [password]}),
            ] {
                if let Err(failure) = check(&v, &body) {
                    assert_never_echoed(&failure, &password);
                }
            }
            let truncated = format!(r#"{{"email": "{email}", "password": "{password}"#);
            if let Err(failure) = v.validate_body(JSON, truncated.as_bytes()) {
                assert_never_echoed(&failure, &password);
            }
        }
        // Every kind of failure in one schema.
        let strict = inline(json!({
            "type": "object",
            "properties": {
                "p": {"type": "string", "minLength": 100, "maxLength": 1, "pattern": "^$",
                      "format": "uuid", "enum": ["x"], "const": "x", "not": {"type": "string"}},
                "n": {"type": "integer"},
                "a": {"type": "array", "uniqueItems": true, "contains": {"const": 0}},
            },
            "additionalProperties": false,
        }));
        let body = json!({"p": password, "n": password, "a": [password, password]});
        if let Err(failure) = check(&strict, &body) {
            assert_never_echoed(&failure, &password);
        }
        let query = RequestValidator::new(None, Some(&schema(ITEMS_QUERY))).unwrap();
        let encoded = percent_encoding::utf8_percent_encode(&password, percent_encoding::NON_ALPHANUMERIC);
        if let Err(failure) = query.validate_query(Some(&format!("limit={encoded}&q={encoded}"))) {
            assert_never_echoed(&failure, &password);
        }
    }
}

// ---- x-message ---------------------------------------------------------------------------------

#[test]
fn x_message_string_and_by_keyword_forms() {
    let v = inline(json!({
        "type": "object",
        "required": ["code", "pin"],
        "x-message": {"required": "must be given"},
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{3}$", "minLength": 3,
                     "x-message": "Code must be three capital letters"},
            "pin": {"type": "string", "pattern": "^[0-9]+$", "maxLength": 6,
                    "x-message": {"pattern": "PIN must be digits"}},
            "ref": {"$ref": "#/$defs/ref"},
        },
        "$defs": {"ref": {"type": "string", "format": "uuid", "x-message": "must be a reference id"}},
    }));
    assert_eq!(
        errors(&v, &json!({})),
        vec![fe("code", "must be given"), fe("pin", "must be given")]
    );
    assert_eq!(
        errors(&v, &json!({"code": "ab", "pin": "12x4567"})),
        vec![
            fe("code", "Code must be three capital letters"),
            fe("pin", "must be at most 6 characters"),
            fe("pin", "PIN must be digits"),
        ]
    );
    assert_eq!(
        errors(&v, &json!({"code": "ABC", "pin": "1", "ref": "nope"})),
        vec![fe("ref", "must be a reference id")]
    );
}

#[test]
fn x_message_for_keywords_that_name_another_field() {
    // A plain string does not apply to `required` and `additionalProperties` failures, which
    // report the child field; an object naming the keyword does.
    let v = inline(json!({
        "type": "object",
        "required": ["a"],
        "properties": {"a": {}, "b": {
            "type": "object",
            "additionalProperties": false,
            "x-message": {"additionalProperties": "is not a known option"},
        }},
        "additionalProperties": false,
        "x-message": "Body must be an object",
    }));
    assert_eq!(
        errors(&v, &json!([])),
        vec![fe("", "Body must be an object")]
    );
    assert_eq!(
        errors(&v, &json!({"z": 1, "b": {"c": 1, "d": 2}})),
        vec![
            fe("a", "is required"),
            fe("b.c", "is not a known option"),
            fe("b.d", "is not a known option"),
            fe("z", "is not allowed"),
        ]
    );
    let v = inline(json!({
        "dependentRequired": {"card": ["cvv"]},
        "propertyNames": {"maxLength": 3, "x-message": "names are at most 3 characters"},
        "x-message": {"required": "is needed with a card"},
    }));
    assert_eq!(
        errors(&v, &json!({"card": 1, "long": 2})),
        vec![
            fe("", "names are at most 3 characters"),
            fe("cvv", "is needed with a card"),
        ]
    );
}

#[test]
fn a_malformed_x_message_is_refused() {
    for bad in [json!(5), json!({"pattern": 5}), json!(["a"])] {
        let schema = json!({"properties": {"a": {"pattern": "x", "x-message": bad}}});
        let err = RequestValidator::new(Some(&schema), None).unwrap_err();
        assert_eq!(
            err,
            "body_schema: x-message at /properties/a must be a string or an object of strings"
        );
    }
    // Inside an embedded resource (`$id` below the root) jsonschema reports keyword locations
    // relative to that resource, so an x-message could be taken from the wrong place: refused.
    let schema = json!({
        "properties": {"a": {"$ref": "inner.json"}},
        "$defs": {"x": {"$id": "inner.json", "type": "string"}},
        "x-message": "root message",
    });
    let err = RequestValidator::new(Some(&schema), None).unwrap_err();
    assert!(
        err.starts_with("body_schema: x-message cannot be used"),
        "{err}"
    );
    let mut without_message = schema.clone();
    without_message.as_object_mut().unwrap().remove("x-message");
    assert_eq!(
        errors(&inline(without_message), &json!({"a": 1})),
        vec![fe("a", "must be a string")]
    );
    // A property named x-message is a property, not a message.
    let schema = json!({"properties": {"x-message": {"type": "string"}}});
    let v = inline(schema);
    assert_eq!(
        errors(&v, &json!({"x-message": 1})),
        vec![fe("x-message", "must be a string")]
    );
}

// ---- messages, paths, order, cap ---------------------------------------------------------------

#[test]
fn formats_are_asserted() {
    let v = inline(json!({
        "type": "object",
        "properties": {
            "id": {"format": "uuid"},
            "at": {"format": "date-time"},
            "day": {"format": "date"},
            "site": {"format": "uri"},
            "ip": {"format": "ipv4"},
        },
    }));
    let good = json!({"id": "67e55044-10b1-426f-9247-bb680e5fe0c8", "at": "2024-01-31T12:00:00Z",
                      "day": "2024-02-29", "site": "https://example.com/a?b", "ip": "10.0.0.1"});
    assert_eq!(check(&v, &good), Ok(()));
    let bad = json!({"id": "67e55044", "at": "yesterday", "day": "2023-02-29",
                     "site": "not a uri", "ip": "10.0.0.256"});
    assert_eq!(
        errors(&v, &bad),
        vec![
            fe(
                "at",
                "must be a valid date-time (RFC 3339, e.g. 2024-01-31T12:00:00Z)"
            ),
            fe("day", "must be a valid date (YYYY-MM-DD)"),
            fe("id", "must be a valid UUID"),
            fe("ip", "must be a valid IPv4 address"),
            fe("site", "must be a valid URI"),
        ]
    );
}

#[test]
fn messages_per_kind() {
    let v = inline(json!({
        "type": "object",
        "properties": {
            "n": {"type": "number", "exclusiveMinimum": 0, "multipleOf": 5},
            "m": {"type": "integer", "exclusiveMaximum": 10},
            "color": {"enum": ["red", "green"]},
            "kind": {"const": "user"},
            "list": {"type": "array", "minItems": 2, "uniqueItems": true},
            "either": {"type": ["string", "null"]},
            "one": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "never": false,
            "obj": {"type": "object", "minProperties": 1},
        },
        "additionalProperties": false,
    }));
    let body = json!({"n": -3, "m": 10, "color": "blue", "kind": "admin", "list": [1],
                      "either": 3, "one": 1.5, "never": 1, "obj": {}, "extra": 1, "more": 2});
    assert_eq!(
        errors(&v, &body),
        vec![
            fe("color", r#"must be one of "red", "green""#),
            fe("either", "must be a string or null"),
            fe("extra", "is not allowed"),
            fe("kind", r#"must be "user""#),
            fe("list", "must have at least 2 items"),
            fe("m", "must be less than 10"),
            fe("more", "is not allowed"),
            fe("n", "must be greater than 0"),
            fe("n", "must be a multiple of 5"),
            fe("never", "is not allowed"),
            fe("obj", "must have at least 1 property"),
            fe("one", "does not match any of the allowed forms"),
        ]
    );
    assert_eq!(
        errors(&v, &json!({"list": [1, 1]})),
        vec![fe("list", "must not contain duplicate items")]
    );
}

#[test]
fn fields_are_dotted_paths() {
    let v = inline(json!({
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "emails": {"type": "array", "items": {"type": "string", "format": "email"}},
                    "0": {"type": "string"},
                    "a.b": {"type": "string"},
                },
            },
        },
    }));
    let body = json!({"user": {"emails": ["ada@example.com", "x"], "0": 1, "a.b": 2}});
    assert_eq!(
        errors(&v, &body),
        vec![
            fe("user.0", "must be a string"),
            fe("user.emails[1]", "must be a valid email address"),
            fe("user.name", "is required"),
            fe(r#"user["a.b"]"#, "must be a string"),
        ]
    );
    // A property named like a keyword is a property.
    let v = inline(
        json!({"properties": {"additionalProperties": false, "required": {"type": "string"}}}),
    );
    assert_eq!(
        errors(
            &v,
            &json!({"additionalProperties": {"a": 1}, "required": 1})
        ),
        vec![
            fe("additionalProperties", "is not allowed"),
            fe("required", "must be a string")
        ]
    );
    // A huge attacker-chosen property name is cut.
    let strict = inline(json!({"additionalProperties": false}));
    let long = "k".repeat(10_000);
    let errors = errors(&strict, &json!({ long.clone(): 1, "b": 2 }));
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0], fe("b", "is not allowed"));
    let errors = &errors[1..];
    assert!(errors[0].field.chars().count() <= 129);
    assert!(errors[0].field.ends_with('…'), "{errors:?}");
}

#[test]
fn errors_are_deduplicated_and_capped() {
    // Two identical constraints give one error.
    let v = inline(json!({"allOf": [{"type": "object"}, {"type": "object"}]}));
    assert_eq!(errors(&v, &json!(1)), vec![fe("", "must be an object")]);
    // Many failures: at most MAX_FIELD_ERRORS, the same ones every time.
    let v = inline(json!({"type": "array", "items": {"type": "string"}}));
    let body = Value::Array((0..500).map(Value::from).collect());
    let first = errors(&v, &body);
    assert_eq!(first.len(), MAX_FIELD_ERRORS);
    assert_eq!(first[0], fe("[0]", "must be a string"));
    assert_eq!(errors(&v, &body), first);
}

// ---- refused schemas ---------------------------------------------------------------------------

#[test]
fn an_invalid_schema_is_refused() {
    let err = RequestValidator::new(Some(&json!({"type": 5})), None).unwrap_err();
    assert!(
        err.starts_with("body_schema: invalid schema at /type"),
        "{err}"
    );
    let err = RequestValidator::new(None, Some(&json!({"properties": {"a": {"minimum": "1"}}})))
        .unwrap_err();
    assert!(
        err.starts_with("query_schema: invalid schema at /properties/a/minimum"),
        "{err}"
    );
    let err = RequestValidator::new(Some(&json!({})), Some(&json!({"required": "a"}))).unwrap_err();
    assert!(err.starts_with("query_schema: "), "{err}");
}

#[test]
fn remote_and_file_references_are_refused_never_fetched() {
    for (schema, uri) in [
        (
            json!({"$ref": "https://example.com/x.json"}),
            "https://example.com/x.json",
        ),
        (
            json!({"properties": {"a": {"$ref": "http://127.0.0.1:9/x.json#/a"}}}),
            "http://127.0.0.1:9/x.json",
        ),
        (json!({"$ref": "file:///etc/passwd"}), "file:///etc/passwd"),
        (json!({"$ref": "other.json"}), "other.json"),
        (
            json!({"$schema": "https://example.com/meta"}),
            "https://example.com/meta",
        ),
    ] {
        let err = RequestValidator::new(Some(&schema), None).unwrap_err();
        assert!(
            err.starts_with("body_schema: unresolvable reference"),
            "{err}"
        );
        assert!(err.contains(uri), "{err}");
    }
    // Local references work.
    let v = inline(
        json!({"$defs": {"s": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/s"}}}),
    );
    assert_eq!(
        errors(&v, &json!({"a": 1})),
        vec![fe("a", "must be a string")]
    );
}

#[test]
fn unknown_formats_and_backtracking_patterns_are_refused() {
    let err = RequestValidator::new(Some(&json!({"format": "phone"})), None).unwrap_err();
    assert!(
        err.starts_with(r#"body_schema: unsupported format "phone" at /format"#),
        "{err}"
    );
    for pattern in ["(?=.*[A-Z])", r"(a)\1", "[unclosed"] {
        let schema = json!({"properties": {"p": {"pattern": pattern}}});
        let err = RequestValidator::new(Some(&schema), None).unwrap_err();
        assert!(
            err.starts_with("body_schema: invalid regular expression at /properties/p/pattern"),
            "{err}"
        );
    }
}
