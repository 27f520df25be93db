//! Payment gateways: the adapter the booking service charges cards through
//! ([`gateway::PaymentGateway`]), and the built-in test gateway that behaves like a card
//! processor ([`test_gateway::TestGateway`]).

pub mod gateway;
pub mod test_gateway;

pub use gateway::{
    Authorize, CardInfo, GatewayError, GatewayPayment, GatewayStatus, PaymentGateway,
};
