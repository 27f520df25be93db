//! The node binary: read settings, set up logs, run.

use node::config::Settings;
use node::startup::Application;

/// jemalloc instead of the system allocator: payments 1.16× and fanout 1.13× old against new,
/// and 40 % less resident memory (BENCHMARKS.md §3, docs/DECISIONS.md).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env_and_args().map_err(anyhow::Error::msg)?;
    node::telemetry::init(settings.log_format);
    let app = Application::build(settings).await?;
    app.run_until_stopped().await
}
