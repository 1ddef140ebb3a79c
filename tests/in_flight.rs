//! The in-flight gauge returns to zero when clients go away before the response head (a test
//! binary of its own, because the gauge is process-wide).

mod support;

use std::time::Duration;

use support::*;

#[tokio::test]
async fn abandoned_requests_leave_the_in_flight_gauge() {
    let app = demo_app().await;
    let running = start(SIMPLE, app).await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    for _ in 0..5 {
        let gave_up = impatient.get(url(&running, "/slow?ms=3000")).send().await;
        assert!(gave_up.is_err(), "the client times out first");
    }
    let done = client()
        .get(url(&running, "/api/items/1"))
        .send()
        .await
        .unwrap();
    done.bytes().await.unwrap();

    let mut last = String::new();
    for _ in 0..40 {
        let text = client()
            .get(admin_url(&running, "/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        last = text
            .lines()
            .find(|l| l.starts_with("rampart_http_requests_in_flight "))
            .unwrap_or_default()
            .to_owned();
        if last == "rampart_http_requests_in_flight 0" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("in-flight gauge did not return to 0: {last:?}");
}
