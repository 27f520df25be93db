//! The built-in test gateway (placeholder until it is written: every call is unavailable).

use async_trait::async_trait;

use super::gateway::{Authorize, CardInfo, GatewayError, GatewayPayment, PaymentGateway};

/// A card processor in memory.
#[derive(Debug, Default)]
pub struct TestGateway;

impl TestGateway {
    pub fn new() -> Self {
        TestGateway
    }
}

#[async_trait]
impl PaymentGateway for TestGateway {
    fn platform(&self) -> &'static str {
        "test"
    }
    async fn customer(&self, _user_id: &str) -> Result<String, GatewayError> {
        Err(GatewayError::Unavailable("not written".into()))
    }
    async fn payment_method(&self, _id: &str) -> Result<CardInfo, GatewayError> {
        Err(GatewayError::Unavailable("not written".into()))
    }
    async fn authorize(&self, _request: Authorize) -> Result<GatewayPayment, GatewayError> {
        Err(GatewayError::Unavailable("not written".into()))
    }
    async fn capture(&self, _id: &str) -> Result<GatewayPayment, GatewayError> {
        Err(GatewayError::Unavailable("not written".into()))
    }
    async fn cancel(&self, _id: &str) -> Result<GatewayPayment, GatewayError> {
        Err(GatewayError::Unavailable("not written".into()))
    }
    async fn retrieve(&self, _id: &str) -> Result<GatewayPayment, GatewayError> {
        Err(GatewayError::Unavailable("not written".into()))
    }
}
