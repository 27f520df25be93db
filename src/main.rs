//! The node binary: read settings, set up logs, run.

use node::config::Settings;
use node::startup::Application;

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env_and_args().map_err(anyhow::Error::msg)?;
    node::telemetry::init(settings.log_format);
    let app = Application::build(settings).await?;
    app.run_until_stopped().await
}
