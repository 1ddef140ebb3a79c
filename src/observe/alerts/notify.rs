//! Delivering one alert notification: a webhook POST (Slack-compatible `{"text": …}` or a
//! generic JSON object), an email over SMTP (lettre; written to the log when no SMTP server is
//! configured, as the seeds' mailer falls back), or a command run with the alert on stdin. Each
//! delivery is bounded by its notifier's timeout and never blocks the evaluator.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::config::{Notifier, NotifierTarget, WebhookFormat};

pub const ALERT_NOTIFICATIONS_TOTAL: &str = "rampart_alert_notifications_total";

/// What is sent: the same fields to every notifier.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub alert: String,
    /// `firing` or `resolved`.
    pub status: &'static str,
    /// Whether this repeats an earlier `firing` notice.
    pub repeat: bool,
    pub severity: String,
    pub condition: &'static str,
    /// The measured value, in words (`"error rate 25.0% over 1m (40 requests)"`).
    pub value: String,
    /// The threshold, in words (`"5%"`).
    pub threshold: String,
    pub summary: Option<String>,
    /// How long it has been firing, in seconds.
    pub firing_seconds: u64,
    /// Unix seconds.
    pub at: u64,
    /// The host rampart runs on.
    pub instance: String,
}

impl Notice {
    pub fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    }

    /// One line for chat and email subjects.
    pub fn headline(&self) -> String {
        let mark = if self.status == "firing" {
            "[FIRING]"
        } else {
            "[RESOLVED]"
        };
        format!(
            "{mark} {} ({}): {} (threshold {})",
            self.alert, self.severity, self.value, self.threshold
        )
    }

    fn text(&self) -> String {
        let mut text = self.headline();
        if let Some(summary) = &self.summary {
            text.push('\n');
            text.push_str(summary);
        }
        if self.status == "resolved" {
            text.push_str(&format!(
                "\nResolved after {}.",
                humantime::format_duration(Duration::from_secs(self.firing_seconds))
            ));
        } else if self.repeat {
            text.push_str(&format!(
                "\nFiring for {}.",
                humantime::format_duration(Duration::from_secs(self.firing_seconds))
            ));
        }
        text.push_str(&format!("\nInstance: {}", self.instance));
        text
    }
}

/// Delivers `notice` through `notifier`; the outcome is logged and counted.
pub async fn deliver(client: &reqwest::Client, notifier: &Notifier, notice: &Notice) {
    let outcome = tokio::time::timeout(notifier.timeout, send(client, notifier, notice)).await;
    let result = match outcome {
        Ok(Ok(())) => "sent",
        Ok(Err(error)) => {
            tracing::error!(target: "rampart::alert", notifier = %notifier.name, alert = %notice.alert, %error, "alert notification failed");
            "failed"
        }
        Err(_) => {
            tracing::error!(target: "rampart::alert", notifier = %notifier.name, alert = %notice.alert, timeout = ?notifier.timeout, "alert notification timed out");
            "timeout"
        }
    };
    metrics::counter!(ALERT_NOTIFICATIONS_TOTAL, "notifier" => notifier.name.clone(), "result" => result)
        .increment(1);
}

async fn send(
    client: &reqwest::Client,
    notifier: &Notifier,
    notice: &Notice,
) -> Result<(), String> {
    match &notifier.target {
        NotifierTarget::Webhook { url, format } => {
            let request = client.post(url.clone());
            let request = match format {
                WebhookFormat::Slack => request.json(&serde_json::json!({ "text": notice.text() })),
                WebhookFormat::Json => request.json(notice),
            };
            let response = request.send().await.map_err(|e| without_url(&e))?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(format!("the webhook answered {}", response.status()))
            }
        }
        NotifierTarget::Email { smtp_url, from, to } => {
            let Some(smtp_url) = smtp_url else {
                tracing::warn!(
                    target: "rampart::alert",
                    notifier = %notifier.name,
                    to = %to.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                    subject = %notice.headline(),
                    body = %notice.text(),
                    "email not sent: SMTP is not configured; the message is logged instead"
                );
                return Ok(());
            };
            send_email(smtp_url, from, to, notice).await
        }
        NotifierTarget::Command { program, args } => run_command(program, args, notice).await,
    }
}

/// reqwest errors name the URL, and a webhook URL is a secret (Slack's carries its token).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    format!("webhook {kind}")
}

async fn send_email(
    smtp_url: &str,
    from: &lettre::message::Mailbox,
    to: &[lettre::message::Mailbox],
    notice: &Notice,
) -> Result<(), String> {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let mut message = Message::builder()
        .from(from.clone())
        .subject(notice.headline());
    for mailbox in to {
        message = message.to(mailbox.clone());
    }
    let message = message
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(notice.text())
        .map_err(|e| format!("cannot build the email: {e}"))?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
        .map_err(|_| "the SMTP URL is not valid".to_owned())?
        .build();
    transport
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| format!("SMTP delivery failed: {e}"))
}

async fn run_command(program: &str, args: &[String], notice: &Notice) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("RAMPART_ALERT_NAME", &notice.alert)
        .env("RAMPART_ALERT_STATUS", notice.status)
        .env("RAMPART_ALERT_SEVERITY", &notice.severity)
        .env("RAMPART_ALERT_VALUE", &notice.value)
        .env(
            "RAMPART_ALERT_SUMMARY",
            notice.summary.as_deref().unwrap_or_default(),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let json = serde_json::to_vec(notice).unwrap_or_default();
        // A command that does not read its input is fine.
        let _ = stdin.write_all(&json).await;
    }
    let status = child
        .wait()
        .await
        .map_err(|e| format!("{program} failed: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{program} exited with {status}"))
    }
}
