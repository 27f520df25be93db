//! The stays service: the calendar actors of listings (one per listing, owning the listing,
//! its days and its reservations), and the payment saga of a reservation across the calendar,
//! the guest's wallet or the card gateway.
//!
//! The saga: `BeginPayment` marks the reservation `processing` (so a second start is
//! refused); the money is then authorized — a hold on the guest's wallet, or an authorization
//! at the gateway — and reported back. The calendar answers what comes next: capture once the
//! stay is confirmed (at once for instant booking, when the host confirms for manual), void
//! once it is declined or cancelled. A failed authorization or capture cancels the stay, which
//! releases its nights. Each step is durable before the next starts; a crash between two
//! steps leaves the reservation `processing`, and `refresh` drives it on from where it is.

use std::sync::Arc;

use actors::calendar::{
    Calendar, Caller, Command, Next, PaymentMethod, PaymentStep, Refusal, Reply, Reservation,
};
use actors::registry::{ArbiterPool, Loaded, Loader, Registry, RegistrySettings, StoredReply};
use actors::wallet::{self, Hold, Owner};
use actors::{ActorError, DomainEvent, IdempotencyKey, Request};
use async_trait::async_trait;
use chrono::NaiveDate;

use crate::clock::Clock;
use crate::payments::{Authorize, GatewayError, GatewayPayment, GatewayStatus, PaymentGateway};
use crate::store::{journal, payments, stays, Db, StoreError};
use crate::wallets::Wallets;

/// The payment method id that pays from the guest's wallet.
pub const WALLET_METHOD: &str = "wallet";

struct CalendarLoader {
    db: Db,
}

#[async_trait]
impl Loader<Calendar> for CalendarLoader {
    async fn load(&self, id: &String) -> Result<Loaded<Calendar>, String> {
        // Raise the epoch first, as for wallets: a batch of an older activation that commits
        // after this point is refused.
        let epoch = journal::raise_epoch(&self.db, "calendar", id)
            .await
            .map_err(|e| e.to_string())?;
        let (listing, days, reservations, tickets) = stays::load_calendar(&self.db, id)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Loaded {
            state: Calendar::new(listing, days, reservations, tickets),
            epoch,
        })
    }

    async fn stored_reply(
        &self,
        _id: &String,
        _key: &IdempotencyKey,
    ) -> Result<Option<StoredReply>, String> {
        // Calendar commands carry no idempotency keys: their state machine refuses repeats.
        Ok(None)
    }
}

/// Why a stays operation did not get the calendar's answer.
#[derive(Debug, thiserror::Error)]
pub enum StayError {
    #[error("refused: {0:?}")]
    Refused(Refusal),
    #[error(transparent)]
    Actor(#[from] ActorError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gateway could not be asked; the payment stays where it was.
    #[error("payment gateway: {0}")]
    Gateway(String),
    /// The payment method id is not one the gateway knows.
    #[error("unknown payment method")]
    UnknownMethod,
}

/// What the payment looks like after a start, refresh or callback (`paymentResult`).
#[derive(Debug, Clone)]
pub struct PaymentOutcome {
    pub reservation: Reservation,
    /// The gateway's view of a card payment, if there is one.
    pub gateway: Option<GatewayPayment>,
    /// Why the last step failed, in the gateway's or the wallet's words.
    pub failure: Option<String>,
}

/// Every listing's calendar, and the payment saga over them.
pub struct Stays {
    registry: Registry<Calendar, DomainEvent>,
    db: Db,
    wallets: Arc<Wallets>,
    gateway: Arc<dyn PaymentGateway>,
    clock: Clock,
}

impl Stays {
    pub fn new(
        db: Db,
        pool: ArbiterPool,
        journal: actors::journal::JournalHandle<DomainEvent>,
        settings: RegistrySettings,
        wallets: Arc<Wallets>,
        gateway: Arc<dyn PaymentGateway>,
        clock: Clock,
    ) -> Arc<Self> {
        let loader = Arc::new(CalendarLoader { db: db.clone() });
        Arc::new(Stays {
            registry: Registry::new(pool, loader, journal, settings),
            db,
            wallets,
            gateway,
            clock,
        })
    }

    pub fn registry(&self) -> &Registry<Calendar, DomainEvent> {
        &self.registry
    }

    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Today (UTC) by the node's clock.
    pub fn today(&self) -> NaiveDate {
        chrono::DateTime::from_timestamp_millis(self.now_ms())
            .map(|t| t.date_naive())
            .unwrap_or_default()
    }

    /// Send a command to a listing's calendar and wait for its durable answer; refusals are
    /// errors.
    pub async fn ask(&self, listing_id: &str, command: Command) -> Result<Reply, StayError> {
        let reply = self
            .registry
            .ask(listing_id.to_owned(), Request::plain(command))
            .await?;
        match reply {
            Reply::Refused(refusal) => Err(StayError::Refused(refusal)),
            other => Ok(other),
        }
    }

    /// A reservation command: the answer, after driving the payment on as the calendar says.
    pub async fn reservation_command(
        &self,
        listing_id: &str,
        command: Command,
    ) -> Result<Reservation, StayError> {
        let (reservation, next) = expect_reservation(self.ask(listing_id, command).await?)?;
        Ok(self.drive(reservation, next, None).await?.reservation)
    }

    /// Start paying a reservation: from the wallet (`paymentMethodId: "wallet"`) or by card.
    pub async fn start_payment(
        &self,
        caller: Caller,
        listing_id: &str,
        reservation_id: &str,
        payment_method_id: &str,
        redirect_url: Option<String>,
    ) -> Result<PaymentOutcome, StayError> {
        let method = if payment_method_id == WALLET_METHOD {
            PaymentMethod::Wallet
        } else {
            // Know the card before anything is marked: an unknown method changes nothing.
            let card = match self.gateway.payment_method(payment_method_id).await {
                Ok(card) => card,
                Err(GatewayError::Unknown(_)) => return Err(StayError::UnknownMethod),
                Err(other) => return Err(StayError::Gateway(other.to_string())),
            };
            let customer = self
                .gateway
                .customer(&caller.user_id)
                .await
                .map_err(|e| StayError::Gateway(e.to_string()))?;
            let now = self.now_ms();
            let platform = self.gateway.platform();
            payments::ensure_customer(&self.db, &caller.user_id, platform, &customer, now).await?;
            let card_info = serde_json::to_value(&card).unwrap_or_default();
            payments::save_method(
                &self.db,
                &caller.user_id,
                platform,
                &customer,
                payment_method_id,
                &card_info,
                now,
            )
            .await?;
            PaymentMethod::Card
        };
        let reply = self
            .ask(
                listing_id,
                Command::BeginPayment {
                    caller,
                    reservation_id: reservation_id.to_owned(),
                    method,
                    ticket_id: uuid::Uuid::new_v4().to_string(),
                    redirect_url,
                    now_ms: self.now_ms(),
                },
            )
            .await?;
        let (reservation, next) = expect_reservation(reply)?;
        self.drive(reservation, next, Some(payment_method_id)).await
    }

    /// Bring a reservation's payment up to date: finish a step a crash interrupted, or take
    /// the gateway's word for where a card payment stands.
    ///
    /// `recover` is for the sweeper only, on a reservation unchanged for longer than any
    /// request takes: it may redo an authorization that never reported back. A client's
    /// refresh never does, since the start that authorizes may still be in flight.
    pub async fn refresh(
        &self,
        reservation: Reservation,
        recover: bool,
    ) -> Result<PaymentOutcome, StayError> {
        let gateway = match (reservation.payment_method, &reservation.payment_ref) {
            (Some(PaymentMethod::Card), Some(payment_ref)) => Some(
                self.gateway
                    .retrieve(payment_ref)
                    .await
                    .map_err(|e| StayError::Gateway(e.to_string()))?,
            ),
            _ => None,
        };
        let next = match pending_step(&reservation) {
            Next::Authorize if !recover => Next::Nothing,
            next => next,
        };
        let mut outcome = self.drive(reservation, next, None).await?;
        if outcome.gateway.is_none() {
            outcome.gateway = gateway;
        }
        Ok(outcome)
    }

    /// Carry out what the calendar asks until it asks nothing more.
    async fn drive(
        &self,
        mut reservation: Reservation,
        mut next: Next,
        payment_method_id: Option<&str>,
    ) -> Result<PaymentOutcome, StayError> {
        let mut gateway = None;
        let mut failure = None;
        // Authorize, then capture or void: at most three steps.
        for _ in 0..4 {
            let step = match next {
                Next::Nothing => break,
                Next::Authorize => {
                    let step = self
                        .authorize(&reservation, payment_method_id, &mut gateway)
                        .await?;
                    if let PaymentStep::Failed { payment_status, .. } = &step {
                        failure = Some(payment_status.clone());
                    }
                    step
                }
                Next::Capture {
                    method,
                    ref payment_ref,
                } => {
                    let step = self
                        .capture(&reservation, method, payment_ref, &mut gateway)
                        .await?;
                    if let PaymentStep::Failed { payment_status, .. } = &step {
                        failure = Some(payment_status.clone());
                    }
                    step
                }
                Next::Void {
                    method,
                    ref payment_ref,
                } => {
                    self.void(&reservation, method, payment_ref, &mut gateway)
                        .await?
                }
            };
            let authorized = match &step {
                PaymentStep::Authorized { payment_ref, .. } => Some(payment_ref.clone()),
                _ => None,
            };
            let reply = self
                .ask(
                    &reservation.listing_id,
                    Command::Payment {
                        reservation_id: reservation.id.clone(),
                        step,
                        now_ms: self.now_ms(),
                    },
                )
                .await;
            if let (Err(StayError::Refused(refusal)), Some(payment_ref)) = (&reply, &authorized) {
                // The reservation moved on while the money was being authorized (expired,
                // or another request finished it): give the money back.
                if let Some(method) = reservation.payment_method {
                    tracing::warn!(reservation = %reservation.id, ?refusal, "releasing an authorization nobody waits for");
                    self.void(&reservation, method, payment_ref, &mut gateway)
                        .await?;
                }
            }
            (reservation, next) = expect_reservation(reply?)?;
        }
        Ok(PaymentOutcome {
            reservation,
            gateway,
            failure,
        })
    }

    fn hold_id(reservation: &Reservation) -> String {
        format!("rsv-{}", reservation.id)
    }

    async fn authorize(
        &self,
        reservation: &Reservation,
        payment_method_id: Option<&str>,
        gateway: &mut Option<GatewayPayment>,
    ) -> Result<PaymentStep, StayError> {
        match reservation.payment_method {
            Some(PaymentMethod::Wallet) | None => {
                let hold_id = Self::hold_id(reservation);
                // A hold id is never reused: one that exists (a retry after a crash) is the
                // authorization itself.
                if stays::hold_exists(&self.db, &hold_id).await? {
                    return Ok(PaymentStep::Authorized {
                        payment_ref: hold_id,
                        payment_status: "held".to_owned(),
                    });
                }
                let reply = self
                    .wallets
                    .ask(
                        &reservation.guest_id,
                        wallet::Command::PlaceHold(Hold {
                            id: hold_id.clone(),
                            money: reservation.currency_total,
                            reference: Some(reservation.id.clone()),
                        }),
                        None,
                    )
                    .await?;
                Ok(match reply {
                    wallet::Reply::Done { .. } => PaymentStep::Authorized {
                        payment_ref: hold_id,
                        payment_status: "held".to_owned(),
                    },
                    wallet::Reply::Refused { refusal, .. } => PaymentStep::Failed {
                        payment_ref: None,
                        payment_status: wallet_refusal(&refusal).to_owned(),
                    },
                })
            }
            Some(PaymentMethod::Card) => {
                let Some(method_id) = payment_method_id else {
                    // An interrupted card start: the gateway keeps its authorizations by our
                    // idempotency key, but without the method there is nothing to ask again.
                    return Ok(PaymentStep::Failed {
                        payment_ref: None,
                        payment_status: "interrupted".to_owned(),
                    });
                };
                let customer = self
                    .gateway
                    .customer(&reservation.guest_id)
                    .await
                    .map_err(|e| StayError::Gateway(e.to_string()))?;
                let payment = self
                    .gateway
                    .authorize(Authorize {
                        customer_id: customer,
                        payment_method_id: method_id.to_owned(),
                        amount_minor: reservation.currency_total.minor(),
                        currency: reservation.currency_total.currency().code().to_owned(),
                        order_id: reservation.id.clone(),
                        idempotency_key: format!("authorize-{}", reservation.id),
                    })
                    .await
                    .map_err(|e| StayError::Gateway(e.to_string()))?;
                let step = match payment.status {
                    GatewayStatus::RequiresCapture | GatewayStatus::Succeeded => {
                        PaymentStep::Authorized {
                            payment_ref: payment.id.clone(),
                            payment_status: payment.status.as_str().to_owned(),
                        }
                    }
                    GatewayStatus::Failed | GatewayStatus::Canceled => PaymentStep::Failed {
                        payment_ref: Some(payment.id.clone()),
                        payment_status: payment
                            .failure_code
                            .clone()
                            .unwrap_or_else(|| payment.status.as_str().to_owned()),
                    },
                };
                *gateway = Some(payment);
                Ok(step)
            }
        }
    }

    async fn capture(
        &self,
        reservation: &Reservation,
        method: PaymentMethod,
        payment_ref: &str,
        gateway: &mut Option<GatewayPayment>,
    ) -> Result<PaymentStep, StayError> {
        match method {
            PaymentMethod::Wallet => {
                let reply = self
                    .wallets
                    .ask(
                        &reservation.guest_id,
                        wallet::Command::Capture {
                            hold_id: payment_ref.to_owned(),
                            credit: Owner::User(reservation.host_id.clone()),
                        },
                        None,
                    )
                    .await?;
                Ok(match reply {
                    wallet::Reply::Done { .. } => PaymentStep::Captured {
                        payment_status: "captured".to_owned(),
                    },
                    // Captured before, and the calendar never heard (a batch lost after the
                    // wallet's committed): the money has moved, so the payment is done.
                    wallet::Reply::Refused {
                        refusal: wallet::Refusal::UnknownHold,
                        ..
                    } if self.hold_captured(payment_ref).await? => PaymentStep::Captured {
                        payment_status: "captured".to_owned(),
                    },
                    wallet::Reply::Refused { refusal, .. } => PaymentStep::Failed {
                        payment_ref: None,
                        payment_status: wallet_refusal(&refusal).to_owned(),
                    },
                })
            }
            PaymentMethod::Card => {
                let payment = self
                    .gateway
                    .capture(payment_ref)
                    .await
                    .map_err(|e| StayError::Gateway(e.to_string()))?;
                let step = match payment.status {
                    GatewayStatus::Succeeded => PaymentStep::Captured {
                        payment_status: payment.status.as_str().to_owned(),
                    },
                    _ => PaymentStep::Failed {
                        payment_ref: None,
                        payment_status: payment
                            .failure_code
                            .clone()
                            .unwrap_or_else(|| payment.status.as_str().to_owned()),
                    },
                };
                *gateway = Some(payment);
                Ok(step)
            }
        }
    }

    /// Whether the store says a wallet hold the wallet no longer knows was captured (rather
    /// than voided): the money moved to the host.
    async fn hold_captured(&self, hold_id: &str) -> Result<bool, StayError> {
        Ok(stays::hold_status(&self.db, hold_id).await?.as_deref() == Some("captured"))
    }

    async fn void(
        &self,
        reservation: &Reservation,
        method: PaymentMethod,
        payment_ref: &str,
        gateway: &mut Option<GatewayPayment>,
    ) -> Result<PaymentStep, StayError> {
        match method {
            PaymentMethod::Wallet => {
                let reply = self
                    .wallets
                    .ask(
                        &reservation.guest_id,
                        wallet::Command::Void {
                            hold_id: payment_ref.to_owned(),
                        },
                        None,
                    )
                    .await?;
                let status = match reply {
                    wallet::Reply::Done { .. } => "voided",
                    // Captured already (a capture that reached the wallet first, from a
                    // confirmation racing this cancellation, or one whose step the calendar
                    // never heard): the money is with the host, so the payment is done, not
                    // voided.
                    wallet::Reply::Refused {
                        refusal: wallet::Refusal::UnknownHold,
                        ..
                    } if self.hold_captured(payment_ref).await? => {
                        return Ok(PaymentStep::Captured {
                            payment_status: "captured".to_owned(),
                        });
                    }
                    // Already settled otherwise: nothing is held any more.
                    wallet::Reply::Refused { .. } => "released",
                };
                Ok(PaymentStep::Voided {
                    payment_status: status.to_owned(),
                })
            }
            PaymentMethod::Card => {
                let payment = self
                    .gateway
                    .cancel(payment_ref)
                    .await
                    .map_err(|e| StayError::Gateway(e.to_string()))?;
                let status = payment.status.as_str().to_owned();
                *gateway = Some(payment);
                Ok(PaymentStep::Voided {
                    payment_status: status,
                })
            }
        }
    }
}

/// What an interrupted saga must do next, judged from the stored reservation alone.
fn pending_step(r: &Reservation) -> Next {
    use actors::calendar::{BookingStatus, PaymentConfirmation};
    if r.payment_confirmation != PaymentConfirmation::Processing {
        return Next::Nothing;
    }
    let Some(method) = r.payment_method else {
        return Next::Nothing;
    };
    match &r.payment_ref {
        None if r.holds_nights() => Next::Authorize,
        None => Next::Nothing,
        Some(payment_ref) if r.booking_status == BookingStatus::Confirmed && r.is_active => {
            Next::Capture {
                method,
                payment_ref: payment_ref.clone(),
            }
        }
        Some(payment_ref) if !r.holds_nights() => Next::Void {
            method,
            payment_ref: payment_ref.clone(),
        },
        Some(_) => Next::Nothing,
    }
}

fn expect_reservation(reply: Reply) -> Result<(Reservation, Next), StayError> {
    match reply {
        Reply::Reservation { reservation, next } => Ok((*reservation, next)),
        Reply::Refused(refusal) => Err(StayError::Refused(refusal)),
        other => Err(StayError::Actor(ActorError::Unavailable(format!(
            "unexpected calendar reply {other:?}"
        )))),
    }
}

fn wallet_refusal(refusal: &wallet::Refusal) -> &'static str {
    match refusal {
        wallet::Refusal::InsufficientFunds { .. } => "insufficient_funds",
        wallet::Refusal::NoAccount { .. } => "no_wallet_account",
        wallet::Refusal::UnknownHold => "unknown_hold",
        wallet::Refusal::DuplicateId => "duplicate_hold",
        _ => "refused",
    }
}

/// Run [`Stays::sweep`] every `every` until `stop`.
pub async fn sweep_until(
    stays: Arc<Stays>,
    every: std::time::Duration,
    payment_window: std::time::Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        if let Err(error) = stays.sweep(payment_window).await {
            tracing::warn!(%error, "stays sweep failed; retrying at the next tick");
        }
    }
}

impl Stays {
    /// The node's own housekeeping of reservations: cancel the ones whose payment never
    /// started within `payment_window` (their nights go back on sale), and drive on payments
    /// an interruption left `processing` for longer than that.
    pub async fn sweep(&self, payment_window: std::time::Duration) -> Result<(), StayError> {
        if payment_window.is_zero() {
            return Ok(());
        }
        let window_ms = i64::try_from(payment_window.as_millis()).unwrap_or(i64::MAX);
        let before = self.now_ms().saturating_sub(window_ms);
        let system = Caller {
            user_id: "system".to_owned(),
            admin: true,
        };
        for row in stays::unpaid_before(&self.db, before).await? {
            let reservation = row.into_reservation();
            let cancelled = self
                .reservation_command(
                    &reservation.listing_id,
                    Command::UpdateReservation {
                        caller: system.clone(),
                        reservation_id: reservation.id.clone(),
                        changes: actors::calendar::ReservationChanges {
                            booking_status: Some(actors::calendar::BookingStatus::Cancelled),
                            ..Default::default()
                        },
                        today: self.today(),
                        now_ms: self.now_ms(),
                    },
                )
                .await;
            match cancelled {
                Ok(_) => {
                    tracing::info!(reservation = %reservation.id, "unpaid reservation expired")
                }
                // Paid or moved meanwhile: nothing to do.
                Err(StayError::Refused(_)) => {}
                Err(other) => return Err(other),
            }
        }
        for row in stays::processing_before(&self.db, before).await? {
            let reservation = row.into_reservation();
            let id = reservation.id.clone();
            if let Err(error) = self.refresh(reservation, true).await {
                tracing::warn!(reservation = %id, %error, "an interrupted payment did not move on");
            }
        }
        Ok(())
    }
}
