//! End to end: JSON Schema validation of bodies and query parameters per route and method, with
//! the seeds' rules (examples/schemas/), 400 with details, 415 for non-JSON bodies.

mod support;

use serde_json::{Value, json};
use support::*;

const CONFIG: &str = r#"
[[upstream]]
name = "app"
targets = ["{app}"]

[[route]]
name = "login"
path = "/auth/login"
methods = ["POST"]
rewrite = "/echo/login"
upstream = "app"
[[route.validate]]
body_schema_file = "examples/schemas/login.json"

[[route]]
name = "campaigns"
path_prefix = "/campaigns"
rewrite = "/echo/campaigns"
upstream = "app"
[[route.validate]]
methods = ["POST", "PUT"]
body_schema_file = "examples/schemas/campaign.json"

[[route]]
name = "ai"
path = "/ai/query"
rewrite = "/echo/ai"
upstream = "app"
[[route.validate]]
methods = ["POST"]
body_schema_file = "examples/schemas/ai_query.json"

[[route]]
name = "items"
path_prefix = "/items"
rewrite = "/echo/items"
upstream = "app"
[[route.validate]]
methods = ["GET"]
query_schema_file = "examples/schemas/items_query.json"
[[route.validate]]
methods = ["POST"]
[route.validate.body_schema]
type = "object"
required = ["name"]
properties = { name = { type = "string", minLength = 1 }, price = { type = "number", minimum = 0 } }
"#;

async fn post(client: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn fields(body: &Value) -> Vec<(String, String)> {
    body["error"]["details"]
        .as_array()
        .unwrap_or_else(|| panic!("details in {body}"))
        .iter()
        .map(|d| {
            (
                d["field"].as_str().unwrap().to_owned(),
                d["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn seed_login_rules() {
    let app = demo_app().await;
    let running = start(CONFIG, app).await;
    let client = client();
    let login = url(&running, "/auth/login");

    let (status, body) = post(
        &client,
        &login,
        json!({"email": "ada@example.com", "password": "Correct-Horse-9!"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["path"], "/echo/login",
        "valid requests reach the upstream"
    );

    for (password, expected) in [
        ("Short-9!abc", "at least 12 characters"),
        ("no-upper-case-9!", "uppercase"),
        ("No-Digits-Here!", "number"),
        ("NoSymbols12345", "special character"),
    ] {
        let (status, body) = post(
            &client,
            &login,
            json!({"email": "ada@example.com", "password": password}),
        )
        .await;
        assert_eq!(status, 400, "{password}: {body}");
        assert_eq!(body["error"]["type"], "validation_failed");
        assert!(body["error"]["request_id"].is_string());
        let fields = fields(&body);
        assert!(
            fields
                .iter()
                .any(|(f, m)| f == "password" && m.contains(expected)),
            "{password}: {fields:?}"
        );
        assert!(
            !body.to_string().contains(password),
            "the password is never echoed: {body}"
        );
    }

    let (status, body) = post(
        &client,
        &login,
        json!({"email": "not-an-email", "password": "Correct-Horse-9!"}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(fields(&body).iter().any(|(f, _)| f == "email"), "{body}");

    let (status, body) = post(&client, &login, json!({"password": "Correct-Horse-9!"})).await;
    assert_eq!(status, 400);
    assert!(fields(&body).iter().any(|(f, _)| f == "email"), "{body}");
}

#[tokio::test]
async fn non_json_bodies_get_415_and_malformed_json_400() {
    let app = demo_app().await;
    let running = start(CONFIG, app).await;
    let client = client();
    let login = url(&running, "/auth/login");
    let text = client
        .post(&login)
        .header("content-type", "text/plain")
        .body("email=a@b.c")
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 415);
    let body: Value = text.json().await.unwrap();
    assert_eq!(body["error"]["type"], "unsupported_media_type");

    let broken = client
        .post(&login)
        .header("content-type", "application/json")
        .body("{\"email\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(broken.status(), 400);
    let body: Value = broken.json().await.unwrap();
    assert_eq!(body["error"]["type"], "malformed_body");
}

#[tokio::test]
async fn campaign_names_and_ai_queries() {
    let app = demo_app().await;
    let running = start(CONFIG, app).await;
    let client = client();
    let campaigns = url(&running, "/campaigns");
    assert_eq!(
        post(&client, &campaigns, json!({"name": "Spring launch"}))
            .await
            .0,
        200
    );
    assert_eq!(post(&client, &campaigns, json!({"name": ""})).await.0, 400);
    assert_eq!(
        post(&client, &campaigns, json!({"name": "   "})).await.0,
        400
    );
    assert_eq!(
        post(&client, &campaigns, json!({"name": "x".repeat(255)}))
            .await
            .0,
        200
    );
    assert_eq!(
        post(&client, &campaigns, json!({"name": "x".repeat(256)}))
            .await
            .0,
        400
    );
    // GET is not validated on this route.
    let listed = client.get(&campaigns).send().await.unwrap();
    assert_eq!(listed.status(), 200);

    let ai = url(&running, "/ai/query");
    assert_eq!(
        post(&client, &ai, json!({"query": "Summarise this"}))
            .await
            .0,
        200
    );
    assert_eq!(
        post(&client, &ai, json!({"query": "q".repeat(1000)}))
            .await
            .0,
        200
    );
    let (status, body) = post(&client, &ai, json!({"query": "q".repeat(1001)})).await;
    assert_eq!(status, 400);
    assert_eq!(fields(&body)[0].0, "query");
    assert_eq!(post(&client, &ai, json!({"query": ""})).await.0, 400);
}

#[tokio::test]
async fn query_parameters_and_inline_schemas() {
    let app = demo_app().await;
    let running = start(CONFIG, app).await;
    let client = client();
    let get = |path: &str| client.get(url(&running, path)).send();
    assert_eq!(
        get("/items?limit=10&offset=0&q=lamp")
            .await
            .unwrap()
            .status(),
        200
    );
    let bad = get("/items?limit=1000").await.unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(fields(&body)[0].0, "limit");
    assert_eq!(get("/items?limit=ten").await.unwrap().status(), 400);
    assert_eq!(get("/items?offset=-1").await.unwrap().status(), 400);

    let items = url(&running, "/items");
    assert_eq!(
        post(&client, &items, json!({"name": "lamp", "price": 9.5}))
            .await
            .0,
        200
    );
    let (status, body) = post(&client, &items, json!({"price": -1})).await;
    assert_eq!(status, 400);
    let fields = fields(&body);
    assert!(fields.iter().any(|(f, _)| f == "name"), "{fields:?}");
    assert!(fields.iter().any(|(f, _)| f == "price"), "{fields:?}");
}

#[test]
fn schema_problems_are_config_errors_with_their_key() {
    let text = r#"
[[upstream]]
name = "app"
targets = ["127.0.0.1:1"]

[[route]]
name = "a"
upstream = "app"
[[route.validate]]
body_schema = { type = 5 }
"#;
    let errors = config_problems(text);
    assert_eq!(
        errors.0[0].key, "route[0].validate[0].body_schema",
        "{errors}"
    );
    assert_eq!(errors.0[0].line, 10, "{errors}");

    let missing = text.replace(
        "body_schema = { type = 5 }",
        "body_schema_file = \"nope.json\"",
    );
    let errors = config_problems(&missing);
    assert_eq!(errors.0[0].key, "route[0].validate[0].body_schema_file");
    assert!(errors.0[0].message.contains("cannot read"), "{errors}");
}
