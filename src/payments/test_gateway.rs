//! The built-in test gateway: a card processor in memory that behaves like Stripe's test mode.
//!
//! Payment methods are Stripe's test tokens (`pm_card_visa`...), each standing for one card
//! with a fixed outcome, so a test or a demo decides the outcome by the token it sends. There
//! is no card number anywhere: a token maps to a brand, the last four digits and an expiry.
//!
//! Everything lives in this process: a restart forgets payments (customers come back the
//! same, being derived from the user id). It is for tests and demos, never for real money.

use async_trait::async_trait;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use sha2::{Digest, Sha256};

use super::gateway::{
    Authorize, CardInfo, GatewayError, GatewayPayment, GatewayStatus, PaymentGateway,
};

/// How many payments the gateway keeps before it refuses new ones. At the maximum,
/// `authorize` answers `Unavailable` (the node treats that as "retry later"), so memory stays
/// bounded however long a demo node runs.
pub const PAYMENTS_MAX: usize = 200_000;

/// How many customers it keeps; at the maximum `customer` answers `Unavailable`.
pub const CUSTOMERS_MAX: usize = 200_000;

/// The longest idempotency key, order id or payment id accepted.
const KEY_BYTES_MAX: usize = 255;

/// The year every test card expires: far enough ahead never to be expired in a test.
const EXP_YEAR: u32 = 2040;

/// What a test card does when it is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Approves,
    /// Authorization fails with this failure code.
    Declines(&'static str),
    /// Authorization succeeds; capture fails with this failure code.
    CaptureDeclines(&'static str),
}

/// A test payment method: its token, the card behind it and what it does.
struct TestCard {
    token: &'static str,
    brand: &'static str,
    last4: &'static str,
    behaviour: Behaviour,
}

/// The payment methods the gateway knows (Stripe's test tokens of the same names).
const CARDS: &[TestCard] = &[
    TestCard {
        token: "pm_card_visa",
        brand: "visa",
        last4: "4242",
        behaviour: Behaviour::Approves,
    },
    TestCard {
        token: "pm_card_mastercard",
        brand: "mastercard",
        last4: "4444",
        behaviour: Behaviour::Approves,
    },
    TestCard {
        token: "pm_card_chargeDeclined",
        brand: "visa",
        last4: "0002",
        behaviour: Behaviour::Declines("card_declined"),
    },
    TestCard {
        token: "pm_card_insufficientFunds",
        brand: "visa",
        last4: "9995",
        behaviour: Behaviour::Declines("insufficient_funds"),
    },
    TestCard {
        token: "pm_card_captureDeclined",
        brand: "visa",
        last4: "0341",
        behaviour: Behaviour::CaptureDeclines("card_declined"),
    },
];

fn card(token: &str) -> Result<&'static TestCard, GatewayError> {
    CARDS
        .iter()
        .find(|c| c.token == token)
        .ok_or_else(|| GatewayError::Unknown(format!("no such payment method: {token}")))
}

impl TestCard {
    fn info(&self) -> CardInfo {
        CardInfo {
            brand: self.brand.to_owned(),
            last4: self.last4.to_owned(),
            exp_month: 12,
            exp_year: EXP_YEAR,
        }
    }
}

/// The customer id of a user: `cus_` and the first 14 bytes of SHA-256 of the user id, in
/// hex. The same user gets the same id in every process, so a restart keeps the customers the
/// node stored.
fn customer_id_of(user_id: &str) -> String {
    let digest = Sha256::digest(format!("test-gateway-customer:{user_id}").as_bytes());
    format!("cus_{}", hex::encode(&digest[..14]))
}

/// A payment with what the gateway needs to remember about it.
#[derive(Debug, Clone)]
struct Stored {
    payment: GatewayPayment,
    /// The parameters of the authorization, to tell a repeat from a reused key.
    order_id: String,
    capture_failure: Option<&'static str>,
}

/// A card processor in memory.
#[derive(Debug, Default)]
pub struct TestGateway {
    /// User ids by customer id.
    customers: DashMap<String, String>,
    /// Payments by payment id.
    payments: DashMap<String, Stored>,
    /// Payment ids by idempotency key.
    keys: DashMap<String, String>,
}

impl TestGateway {
    pub fn new() -> Self {
        TestGateway::default()
    }

    fn stored(&self, payment_id: &str) -> Result<Stored, GatewayError> {
        self.payments
            .get(payment_id)
            .map(|s| s.clone())
            .ok_or_else(|| GatewayError::Unknown(format!("no such payment: {payment_id}")))
    }

    /// A new payment for a request whose key was never seen.
    fn new_payment(&self, request: &Authorize, card: &TestCard) -> Stored {
        let (status, failure_code, capture_failure) = match card.behaviour {
            Behaviour::Approves => (GatewayStatus::RequiresCapture, None, None),
            Behaviour::Declines(code) => (GatewayStatus::Failed, Some(code.to_owned()), None),
            Behaviour::CaptureDeclines(code) => (GatewayStatus::RequiresCapture, None, Some(code)),
        };
        Stored {
            payment: GatewayPayment {
                id: format!("pi_{}", uuid::Uuid::new_v4().simple()),
                status,
                amount_minor: request.amount_minor,
                currency: request.currency.clone(),
                customer_id: request.customer_id.clone(),
                payment_method_id: request.payment_method_id.clone(),
                card: card.info(),
                failure_code,
            },
            order_id: request.order_id.clone(),
            capture_failure,
        }
    }
}

/// Whether a repeat of a key asks for the same payment (Stripe refuses a key reused with
/// other parameters).
fn same_request(stored: &Stored, request: &Authorize) -> bool {
    let p = &stored.payment;
    p.amount_minor == request.amount_minor
        && p.currency == request.currency
        && p.customer_id == request.customer_id
        && p.payment_method_id == request.payment_method_id
        && stored.order_id == request.order_id
}

fn check_request(request: &Authorize) -> Result<(), GatewayError> {
    if request.amount_minor <= 0 {
        return Err(GatewayError::Invalid(
            "the amount must be greater than zero".into(),
        ));
    }
    let currency_ok =
        request.currency.len() == 3 && request.currency.bytes().all(|b| b.is_ascii_uppercase());
    if !currency_ok {
        return Err(GatewayError::Invalid(
            "the currency must be a three-letter upper-case code".into(),
        ));
    }
    for (name, value) in [
        ("idempotency key", &request.idempotency_key),
        ("order id", &request.order_id),
    ] {
        if value.is_empty() || value.len() > KEY_BYTES_MAX {
            return Err(GatewayError::Invalid(format!(
                "the {name} must be 1 to {KEY_BYTES_MAX} bytes"
            )));
        }
    }
    Ok(())
}

#[async_trait]
impl PaymentGateway for TestGateway {
    fn platform(&self) -> &'static str {
        "test"
    }

    async fn customer(&self, user_id: &str) -> Result<String, GatewayError> {
        if user_id.is_empty() || user_id.len() > KEY_BYTES_MAX {
            return Err(GatewayError::Invalid(format!(
                "the user id must be 1 to {KEY_BYTES_MAX} bytes"
            )));
        }
        let id = customer_id_of(user_id);
        if self.customers.contains_key(&id) {
            return Ok(id);
        }
        if self.customers.len() >= CUSTOMERS_MAX {
            return Err(GatewayError::Unavailable(
                "the test gateway holds the most customers it keeps".into(),
            ));
        }
        self.customers.insert(id.clone(), user_id.to_owned());
        Ok(id)
    }

    async fn payment_method(&self, payment_method_id: &str) -> Result<CardInfo, GatewayError> {
        card(payment_method_id).map(TestCard::info)
    }

    async fn authorize(&self, request: Authorize) -> Result<GatewayPayment, GatewayError> {
        check_request(&request)?;
        let card = card(&request.payment_method_id)?;
        if !self.customers.contains_key(&request.customer_id) {
            return Err(GatewayError::Unknown(format!(
                "no such customer: {}",
                request.customer_id
            )));
        }
        // The key's entry stays locked while the payment is made, so two authorizations with
        // one key made at once give one payment.
        match self.keys.entry(request.idempotency_key.clone()) {
            Entry::Occupied(existing) => {
                let stored = self.stored(existing.get())?;
                if !same_request(&stored, &request) {
                    return Err(GatewayError::Invalid(
                        "this idempotency key was used for a different payment".into(),
                    ));
                }
                Ok(stored.payment)
            }
            Entry::Vacant(slot) => {
                if self.payments.len() >= PAYMENTS_MAX {
                    return Err(GatewayError::Unavailable(
                        "the test gateway holds the most payments it keeps".into(),
                    ));
                }
                let stored = self.new_payment(&request, card);
                let payment = stored.payment.clone();
                self.payments.insert(payment.id.clone(), stored);
                slot.insert(payment.id.clone());
                tracing::debug!(payment_id = %payment.id, status = payment.status.as_str(),
                    "test gateway authorized");
                Ok(payment)
            }
        }
    }

    async fn capture(&self, payment_id: &str) -> Result<GatewayPayment, GatewayError> {
        let mut stored = self
            .payments
            .get_mut(payment_id)
            .ok_or_else(|| GatewayError::Unknown(format!("no such payment: {payment_id}")))?;
        match stored.payment.status {
            GatewayStatus::RequiresCapture => {
                match stored.capture_failure {
                    Some(code) => {
                        stored.payment.status = GatewayStatus::Failed;
                        stored.payment.failure_code = Some(code.to_owned());
                    }
                    None => stored.payment.status = GatewayStatus::Succeeded,
                }
                tracing::debug!(
                    payment_id,
                    status = stored.payment.status.as_str(),
                    "test gateway captured"
                );
                Ok(stored.payment.clone())
            }
            GatewayStatus::Succeeded => Ok(stored.payment.clone()),
            GatewayStatus::Canceled | GatewayStatus::Failed => Err(GatewayError::Invalid(format!(
                "a {} payment cannot be captured",
                stored.payment.status.as_str()
            ))),
        }
    }

    async fn cancel(&self, payment_id: &str) -> Result<GatewayPayment, GatewayError> {
        let mut stored = self
            .payments
            .get_mut(payment_id)
            .ok_or_else(|| GatewayError::Unknown(format!("no such payment: {payment_id}")))?;
        match stored.payment.status {
            GatewayStatus::RequiresCapture => {
                stored.payment.status = GatewayStatus::Canceled;
                tracing::debug!(payment_id, "test gateway cancelled");
                Ok(stored.payment.clone())
            }
            GatewayStatus::Canceled | GatewayStatus::Failed => Ok(stored.payment.clone()),
            GatewayStatus::Succeeded => Err(GatewayError::Invalid(
                "a captured payment cannot be cancelled (refund it)".into(),
            )),
        }
    }

    async fn retrieve(&self, payment_id: &str) -> Result<GatewayPayment, GatewayError> {
        self.stored(payment_id).map(|s| s.payment)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn request(gateway_customer: &str, method: &str, key: &str) -> Authorize {
        Authorize {
            customer_id: gateway_customer.to_owned(),
            payment_method_id: method.to_owned(),
            amount_minor: 36_000,
            currency: "USD".to_owned(),
            order_id: "reservation-1".to_owned(),
            idempotency_key: key.to_owned(),
        }
    }

    async fn authorized(gateway: &TestGateway, method: &str) -> GatewayPayment {
        let customer = gateway.customer("guest").await.unwrap();
        gateway
            .authorize(request(
                &customer,
                method,
                &uuid::Uuid::new_v4().to_string(),
            ))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn it_is_the_test_platform() {
        assert_eq!(TestGateway::new().platform(), "test");
    }

    #[tokio::test]
    async fn customers_are_stable_per_user_and_distinct_between_users() {
        let gateway = TestGateway::new();
        let first = gateway.customer("user-a").await.unwrap();
        assert!(first.starts_with("cus_"), "{first}");
        assert_eq!(gateway.customer("user-a").await.unwrap(), first);
        assert_ne!(gateway.customer("user-b").await.unwrap(), first);
        // Another process (a restarted node) gives the same user the same customer.
        assert_eq!(TestGateway::new().customer("user-a").await.unwrap(), first);
        assert!(matches!(
            gateway.customer("").await,
            Err(GatewayError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn every_test_token_maps_to_its_card_and_others_are_unknown() {
        let gateway = TestGateway::new();
        for (token, brand, last4) in [
            ("pm_card_visa", "visa", "4242"),
            ("pm_card_mastercard", "mastercard", "4444"),
            ("pm_card_chargeDeclined", "visa", "0002"),
            ("pm_card_insufficientFunds", "visa", "9995"),
            ("pm_card_captureDeclined", "visa", "0341"),
        ] {
            let info = gateway.payment_method(token).await.unwrap();
            assert_eq!((info.brand.as_str(), info.last4.as_str()), (brand, last4));
            assert_eq!((info.exp_month, info.exp_year), (12, EXP_YEAR));
        }
        for unknown in ["pm_card_amex", "4242424242424242", "", "PM_CARD_VISA"] {
            assert!(
                matches!(
                    gateway.payment_method(unknown).await,
                    Err(GatewayError::Unknown(_))
                ),
                "{unknown}"
            );
        }
    }

    #[tokio::test]
    async fn approving_cards_authorize_and_declining_ones_fail_with_their_code() {
        let gateway = TestGateway::new();
        for (token, status, code) in [
            ("pm_card_visa", GatewayStatus::RequiresCapture, None),
            ("pm_card_mastercard", GatewayStatus::RequiresCapture, None),
            (
                "pm_card_chargeDeclined",
                GatewayStatus::Failed,
                Some("card_declined"),
            ),
            (
                "pm_card_insufficientFunds",
                GatewayStatus::Failed,
                Some("insufficient_funds"),
            ),
            (
                "pm_card_captureDeclined",
                GatewayStatus::RequiresCapture,
                None,
            ),
        ] {
            let payment = authorized(&gateway, token).await;
            assert_eq!(payment.status, status, "{token}");
            assert_eq!(payment.failure_code.as_deref(), code, "{token}");
            assert!(payment.id.starts_with("pi_"), "{}", payment.id);
            assert_eq!(payment.id.len(), 3 + 32, "pi_ and a simple uuid");
            assert_eq!(payment.amount_minor, 36_000);
            assert_eq!(payment.currency, "USD");
            assert_eq!(payment.payment_method_id, token);
            assert_eq!(gateway.retrieve(&payment.id).await.unwrap(), payment);
        }
    }

    #[tokio::test]
    async fn bad_authorizations_are_refused_and_leave_nothing() {
        let gateway = TestGateway::new();
        let customer = gateway.customer("guest").await.unwrap();
        for amount in [0, -1] {
            let mut bad = request(&customer, "pm_card_visa", "k-amount");
            bad.amount_minor = amount;
            assert!(matches!(
                gateway.authorize(bad).await,
                Err(GatewayError::Invalid(_))
            ));
        }
        for currency in ["", "usd", "US", "USDX"] {
            let mut bad = request(&customer, "pm_card_visa", "k-currency");
            bad.currency = currency.to_owned();
            assert!(
                matches!(gateway.authorize(bad).await, Err(GatewayError::Invalid(_))),
                "{currency}"
            );
        }
        let no_key = request(&customer, "pm_card_visa", "");
        assert!(matches!(
            gateway.authorize(no_key).await,
            Err(GatewayError::Invalid(_))
        ));
        let unknown_card = request(&customer, "pm_card_unknown", "k-card");
        assert!(matches!(
            gateway.authorize(unknown_card).await,
            Err(GatewayError::Unknown(_))
        ));
        let unknown_customer = request("cus_nobody", "pm_card_visa", "k-customer");
        assert!(matches!(
            gateway.authorize(unknown_customer).await,
            Err(GatewayError::Unknown(_))
        ));
        assert!(gateway.payments.is_empty());
        assert!(gateway.keys.is_empty());
        // The refused keys are free: a good request with one of them makes a payment.
        let good = gateway
            .authorize(request(&customer, "pm_card_visa", "k-amount"))
            .await
            .unwrap();
        assert_eq!(good.status, GatewayStatus::RequiresCapture);
    }

    #[tokio::test]
    async fn the_same_key_gives_the_same_payment_and_a_reused_key_is_refused() {
        let gateway = TestGateway::new();
        let customer = gateway.customer("guest").await.unwrap();
        let first = gateway
            .authorize(request(&customer, "pm_card_visa", "key-1"))
            .await
            .unwrap();
        let again = gateway
            .authorize(request(&customer, "pm_card_visa", "key-1"))
            .await
            .unwrap();
        assert_eq!(again, first);
        // A declined payment repeats as the same declined payment.
        let declined = gateway
            .authorize(request(&customer, "pm_card_chargeDeclined", "key-2"))
            .await
            .unwrap();
        let declined_again = gateway
            .authorize(request(&customer, "pm_card_chargeDeclined", "key-2"))
            .await
            .unwrap();
        assert_eq!(declined_again, declined);
        let mut other_amount = request(&customer, "pm_card_visa", "key-1");
        other_amount.amount_minor += 1;
        assert!(matches!(
            gateway.authorize(other_amount).await,
            Err(GatewayError::Invalid(_))
        ));
        let other_card = request(&customer, "pm_card_mastercard", "key-1");
        assert!(matches!(
            gateway.authorize(other_card).await,
            Err(GatewayError::Invalid(_))
        ));
        // A different key is a different payment.
        let second = gateway
            .authorize(request(&customer, "pm_card_visa", "key-3"))
            .await
            .unwrap();
        assert_ne!(second.id, first.id);
        assert_eq!(gateway.payments.len(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_authorizations_with_one_key_make_one_payment() {
        let gateway = std::sync::Arc::new(TestGateway::new());
        let customer = gateway.customer("guest").await.unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let gateway = std::sync::Arc::clone(&gateway);
                let request = request(&customer, "pm_card_visa", "same-key");
                tokio::spawn(async move { gateway.authorize(request).await.unwrap().id })
            })
            .collect();
        let mut ids = std::collections::HashSet::new();
        for task in tasks {
            ids.insert(task.await.unwrap());
        }
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert_eq!(gateway.payments.len(), 1);
    }

    #[tokio::test]
    async fn capture_charges_an_authorization_once() {
        let gateway = TestGateway::new();
        let payment = authorized(&gateway, "pm_card_visa").await;
        let captured = gateway.capture(&payment.id).await.unwrap();
        assert_eq!(captured.status, GatewayStatus::Succeeded);
        assert_eq!(captured.failure_code, None);
        // Capturing a captured payment returns it unchanged.
        assert_eq!(gateway.capture(&payment.id).await.unwrap(), captured);
        assert_eq!(gateway.retrieve(&payment.id).await.unwrap(), captured);
    }

    #[tokio::test]
    async fn capture_declined_cards_fail_at_capture() {
        let gateway = TestGateway::new();
        let payment = authorized(&gateway, "pm_card_captureDeclined").await;
        assert_eq!(payment.status, GatewayStatus::RequiresCapture);
        let failed = gateway.capture(&payment.id).await.unwrap();
        assert_eq!(failed.status, GatewayStatus::Failed);
        assert_eq!(failed.failure_code.as_deref(), Some("card_declined"));
        // Failed is final: no second capture; a cancel returns it unchanged.
        assert!(matches!(
            gateway.capture(&payment.id).await,
            Err(GatewayError::Invalid(_))
        ));
        assert_eq!(gateway.cancel(&payment.id).await.unwrap(), failed);
    }

    #[tokio::test]
    async fn cancelled_and_failed_payments_cannot_be_captured() {
        let gateway = TestGateway::new();
        let payment = authorized(&gateway, "pm_card_visa").await;
        let cancelled = gateway.cancel(&payment.id).await.unwrap();
        assert_eq!(cancelled.status, GatewayStatus::Canceled);
        assert!(matches!(
            gateway.capture(&payment.id).await,
            Err(GatewayError::Invalid(_))
        ));
        let declined = authorized(&gateway, "pm_card_insufficientFunds").await;
        assert!(matches!(
            gateway.capture(&declined.id).await,
            Err(GatewayError::Invalid(_))
        ));
        assert_eq!(
            gateway.retrieve(&declined.id).await.unwrap().status,
            GatewayStatus::Failed
        );
    }

    #[tokio::test]
    async fn cancel_releases_an_authorization_and_repeats_harmlessly() {
        let gateway = TestGateway::new();
        let payment = authorized(&gateway, "pm_card_mastercard").await;
        let cancelled = gateway.cancel(&payment.id).await.unwrap();
        assert_eq!(cancelled.status, GatewayStatus::Canceled);
        assert_eq!(gateway.cancel(&payment.id).await.unwrap(), cancelled);
        let declined = authorized(&gateway, "pm_card_chargeDeclined").await;
        assert_eq!(gateway.cancel(&declined.id).await.unwrap(), declined);
    }

    #[tokio::test]
    async fn a_captured_payment_cannot_be_cancelled() {
        let gateway = TestGateway::new();
        let payment = authorized(&gateway, "pm_card_visa").await;
        let captured = gateway.capture(&payment.id).await.unwrap();
        assert!(matches!(
            gateway.cancel(&payment.id).await,
            Err(GatewayError::Invalid(_))
        ));
        assert_eq!(gateway.retrieve(&payment.id).await.unwrap(), captured);
    }

    #[tokio::test]
    async fn unknown_payments_are_unknown() {
        let gateway = TestGateway::new();
        for call in ["capture", "cancel", "retrieve"] {
            let result = match call {
                "capture" => gateway.capture("pi_nope").await,
                "cancel" => gateway.cancel("pi_nope").await,
                _ => gateway.retrieve("pi_nope").await,
            };
            assert!(matches!(result, Err(GatewayError::Unknown(_))), "{call}");
        }
    }

    #[tokio::test]
    async fn nothing_the_gateway_returns_carries_a_card_number() {
        let gateway = TestGateway::new();
        let payment = authorized(&gateway, "pm_card_visa").await;
        let shown = serde_json::to_string(&payment).unwrap();
        assert!(!shown.contains("4242424242424242"), "{shown}");
        assert!(shown.contains("\"last4\":\"4242\""), "{shown}");
    }
}
