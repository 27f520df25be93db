//! Getting a scenario's clients ready: users, money, threads, connections, each made with a
//! bounded number of requests in flight.

use std::future::Future;

use anyhow::Context;
use futures_util::stream::{self, StreamExt, TryStreamExt};

use crate::client::{Rest, User};
use crate::progress;

/// Run `make(i)` for `i in 0..n`, at most `concurrency` at once, in order of `i`, showing
/// progress; the first error stops the step.
pub async fn each<T, F, Fut>(
    n: usize,
    concurrency: usize,
    what: &str,
    make: F,
) -> anyhow::Result<Vec<T>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let bar = progress::bar(n as u64, what);
    let bar_ref = &bar;
    let make = &make;
    let out = stream::iter(0..n)
        .map(|i| async move {
            let item = make(i).await;
            bar_ref.inc(1);
            item
        })
        .buffered(concurrency.max(1))
        .try_collect::<Vec<T>>()
        .await
        .with_context(|| format!("while setting up: {what}"));
    bar.finish_and_clear();
    out
}

/// `n` fresh users, named after the run's prefix.
pub async fn users(
    rest: &Rest,
    n: usize,
    prefix: &str,
    concurrency: usize,
) -> anyhow::Result<Vec<User>> {
    each(n, concurrency, "users", |i| {
        let rest = rest.clone();
        let email = format!("{prefix}-{i}@example.com");
        async move { rest.user(&email).await }
    })
    .await
}
