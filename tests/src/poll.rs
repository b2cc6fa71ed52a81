//! Waiting for a condition: a bounded poll with a deadline, never a bare sleep.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// Pause between two attempts.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Runs `attempt` until it returns `Ok`, at most until `timeout` has passed (an
/// attempt still running at the deadline is abandoned). The error names `what`
/// and carries the last attempt's error.
pub async fn poll<T, E, F, Fut>(what: &str, timeout: Duration, mut attempt: F) -> anyhow::Result<T>
where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + timeout;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let last = match tokio::time::timeout_at(deadline, attempt()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "the attempt was still running at the deadline".to_owned(),
        };
        if Instant::now() + POLL_INTERVAL >= deadline {
            anyhow::bail!(
                "{what}: not done within {:.1} s ({attempts} attempts); last: {last}",
                timeout.as_secs_f64()
            );
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_success_and_reports_the_last_error() -> anyhow::Result<()> {
        let mut n = 0;
        let v = poll("count to 3", Duration::from_secs(5), || {
            n += 1;
            let n = n;
            async move {
                if n >= 3 {
                    Ok(n)
                } else {
                    Err(format!("only {n}"))
                }
            }
        })
        .await?;
        assert_eq!(v, 3);
        let e = poll("never", Duration::from_millis(300), || async {
            Err::<(), _>("still no")
        })
        .await
        .expect_err("times out");
        assert!(
            e.to_string().contains("never") && e.to_string().contains("still no"),
            "{e}"
        );
        Ok(())
    }
}
