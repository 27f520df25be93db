//! Redis's writes paused, as a stalled Redis would hold them: shared by the test binaries
//! that need it (`#[path]`-included, so it is not a test binary of its own).

use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use tokio::sync::{Mutex, MutexGuard};

/// One pause at a time in a test binary: a test's `CLIENT UNPAUSE` would end another's pause
/// early, and that one would then prove nothing (or fail).
static TURN: Mutex<()> = Mutex::const_new(());

/// A `CLIENT PAUSE … WRITE` in force: Redis (6.2 or later) holds every client's PUBLISH until
/// [`RedisPause::end`], or until `max` has passed, so a test that fails before it unpauses
/// leaves Redis paused only briefly.
pub struct RedisPause {
    admin: MultiplexedConnection,
    started: Instant,
    max: Duration,
    _turn: MutexGuard<'static, ()>,
}

impl RedisPause {
    /// Pause Redis's writes for at most `max`, which should be shorter than the bus's 5 s
    /// reply timeout so the nodes keep their connections.
    pub async fn start(url: &str, max: Duration) -> RedisPause {
        let turn = TURN.lock().await;
        let mut admin = redis::Client::open(url)
            .expect("TEST_REDIS_URL")
            .get_multiplexed_async_connection()
            .await
            .expect("admin connection to TEST_REDIS_URL");
        redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(u64::try_from(max.as_millis()).expect("a pause of sane length"))
            .arg("WRITE")
            .exec_async(&mut admin)
            .await
            .expect("CLIENT PAUSE");
        RedisPause {
            admin,
            // Taken after PAUSE's answer: the pause began a little earlier, so `held` errs
            // towards saying it may have ended.
            started: Instant::now(),
            max,
            _turn: turn,
        }
    }

    /// The pause is surely still in force (nothing has unpaused Redis and `max` has not passed).
    pub fn held(&self) -> bool {
        self.started.elapsed() < self.max
    }

    /// Unpause Redis.
    pub async fn end(mut self) {
        redis::cmd("CLIENT")
            .arg("UNPAUSE")
            .exec_async(&mut self.admin)
            .await
            .expect("CLIENT UNPAUSE");
    }
}
