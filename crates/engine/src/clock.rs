//! The engine's clock. Production reads the system's wall clock (a laptop that slept must not
//! think no time passed); tests use a virtual clock that follows tokio's paused time, so policies
//! and the supervisor are tested without ever sleeping for real.

use chrono::Utc;
use tokio::time::Instant;

use crate::time::Timestamp;

#[derive(Debug, Clone, Copy)]
pub enum Clock {
    System,
    /// Wall time = `base_wall` + tokio time elapsed since `base`.
    Virtual {
        base_wall: Timestamp,
        base: Instant,
    },
}

impl Clock {
    /// A virtual clock starting now; advances with `tokio::time` (pause/advance in tests).
    pub fn virtual_now() -> Self {
        Clock::Virtual {
            base_wall: Utc::now(),
            base: Instant::now(),
        }
    }

    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => Utc::now(),
            Clock::Virtual { base_wall, base } => {
                let elapsed = Instant::now().saturating_duration_since(*base);
                *base_wall + chrono::Duration::from_std(elapsed).unwrap_or_default()
            }
        }
    }

    /// Awaits `work` (a store operation). A virtual clock stands still meanwhile: SQLite answers
    /// from its own threads, and tokio's paused time would otherwise race ahead through every
    /// pending timer while the database works, so a test would see its backoffs expire during a
    /// single write. A parked blocking task is what holds paused time (tokio does not advance it
    /// while one runs). The system clock just awaits.
    pub async fn hold<F: std::future::Future>(&self, work: F) -> F::Output {
        match self {
            Clock::System => work.await,
            Clock::Virtual { .. } => {
                let (tx, rx) = std::sync::mpsc::channel::<()>();
                let guard = tokio::task::spawn_blocking(move || {
                    let _ = rx.recv();
                });
                let out = work.await;
                drop(tx);
                let _ = guard.await;
                out
            }
        }
    }

    /// Converts a wall time to the tokio instant at which it falls (for timers).
    pub fn instant_at(&self, at: Timestamp) -> Instant {
        let now_wall = self.now();
        let now = Instant::now();
        match (at - now_wall).to_std() {
            Ok(ahead) => now + ahead,
            Err(_) => now,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn virtual_clock_follows_paused_tokio_time() {
        let c = Clock::virtual_now();
        let t0 = c.now();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        assert_eq!((c.now() - t0).num_seconds(), 3600);
        let at = c.now() + chrono::Duration::seconds(5);
        assert_eq!(c.instant_at(at) - Instant::now(), Duration::from_secs(5));
    }
}
