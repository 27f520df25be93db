//! What the node needs from a card payment gateway: customers, and payments that are
//! authorized first and captured or cancelled later (an authorization holds the guest's funds
//! while a host decides).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// The card behind a payment method: never the number, only what a receipt shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardInfo {
    pub brand: String,
    pub last4: String,
    pub exp_month: u32,
    pub exp_year: u32,
}

/// Where a gateway payment stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayStatus {
    /// Authorized: the funds are held, nothing is charged yet.
    RequiresCapture,
    /// Captured: charged.
    Succeeded,
    /// Cancelled before capture: the hold is released.
    Canceled,
    /// The gateway refused it (a declined card, say).
    Failed,
}

impl GatewayStatus {
    /// The gateway's own word for it (`paymentStatus` of a reservation payment).
    pub fn as_str(&self) -> &'static str {
        match self {
            GatewayStatus::RequiresCapture => "requires_capture",
            GatewayStatus::Succeeded => "succeeded",
            GatewayStatus::Canceled => "canceled",
            GatewayStatus::Failed => "failed",
        }
    }
}

/// A payment as the gateway knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayPayment {
    /// The gateway's payment id (`paymentId`).
    pub id: String,
    pub status: GatewayStatus,
    pub amount_minor: i64,
    pub currency: String,
    pub customer_id: String,
    pub payment_method_id: String,
    pub card: CardInfo,
    /// Why it failed, in the gateway's words (`card_declined`, `insufficient_funds`...).
    pub failure_code: Option<String>,
}

/// A request to authorize (hold) an amount on a customer's payment method.
#[derive(Debug, Clone)]
pub struct Authorize {
    pub customer_id: String,
    pub payment_method_id: String,
    pub amount_minor: i64,
    pub currency: String,
    /// The reservation id: the gateway's order reference.
    pub order_id: String,
    /// The same key returns the same payment instead of authorizing twice.
    pub idempotency_key: String,
}

/// Why a gateway call did not give an answer about the payment.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The gateway does not know this payment method or payment.
    #[error("unknown to the gateway: {0}")]
    Unknown(String),
    /// The request is not one the gateway accepts (a negative amount, a capture of a
    /// cancelled payment).
    #[error("refused by the gateway: {0}")]
    Invalid(String),
    /// The gateway could not be reached or failed; the outcome is unknown, retry later.
    #[error("gateway unavailable: {0}")]
    Unavailable(String),
}

/// A card payment gateway.
#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// The gateway's name, stored as `platform` on customers and methods.
    fn platform(&self) -> &'static str;

    /// The gateway customer of a node user, created on first use; the same user always gets
    /// the same customer.
    async fn customer(&self, user_id: &str) -> Result<String, GatewayError>;

    /// The card behind a payment method id.
    async fn payment_method(&self, payment_method_id: &str) -> Result<CardInfo, GatewayError>;

    /// Authorize an amount. A declined card is an `Ok` payment with status `Failed`.
    async fn authorize(&self, request: Authorize) -> Result<GatewayPayment, GatewayError>;

    /// Capture an authorized payment. Capturing a captured payment returns it unchanged; a
    /// capture the card refuses is an `Ok` payment with status `Failed`.
    async fn capture(&self, payment_id: &str) -> Result<GatewayPayment, GatewayError>;

    /// Cancel an authorized payment. Cancelling a cancelled or failed payment returns it
    /// unchanged.
    async fn cancel(&self, payment_id: &str) -> Result<GatewayPayment, GatewayError>;

    /// The payment as it stands now.
    async fn retrieve(&self, payment_id: &str) -> Result<GatewayPayment, GatewayError>;
}
