//! The wallet: one actor per user, the only writer of debits on that user's accounts.
//!
//! It owns the user's accounts (one per currency), PIN state, the payment requests addressed to
//! the user (so that paying, rejecting and cancelling one are serialised here), and holds.
//! Every decision is taken against memory; the events it emits make the decision durable:
//! transfers (double entry: one debit, one credit), request and hold changes, PIN failures, and
//! feed entries that become the user's sequenced pushes.
//!
//! A credit to another user cannot fail: the payee's balance row is updated in the payor's
//! batch, and after commit the payee's live actor (if any) applies the credit in memory
//! ([`Credit`]), skipping it if its state was loaded after the commit ([`Account::version`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::entity::{Entity, Outcome};
use crate::money::{Currency, Money};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Who owns a ledger account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Owner {
    User(String),
    /// An app's revenue account (Pavillion charges, Muvi studios, Jarvis marketplaces).
    App(String),
    /// Where deposits come from and withdrawals go.
    System(SystemAccount),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SystemAccount {
    CashIn,
    CashOut,
}

impl Owner {
    /// `(kind, id)` as stored.
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            Owner::User(id) => ("user", id),
            Owner::App(id) => ("app", id),
            Owner::System(SystemAccount::CashIn) => ("system", "cash_in"),
            Owner::System(SystemAccount::CashOut) => ("system", "cash_out"),
        }
    }
}

/// What a transfer was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    Deposit,
    Withdrawal,
    Payment,
    TerminalPayment,
    Charge,
    Hold,
}

impl TransferKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransferKind::Deposit => "deposit",
            TransferKind::Withdrawal => "withdrawal",
            TransferKind::Payment => "payment",
            TransferKind::TerminalPayment => "terminal_payment",
            TransferKind::Charge => "charge",
            TransferKind::Hold => "hold",
        }
    }
}

/// A number the store assigns as it writes an event (a credit's account version, a feed
/// entry's sequence number), read once the batch has committed. Every attempt at writing the
/// event sets it again: a batch the store refused is settled again in parts, and the numbers
/// a refused attempt assigned were never stored, so only the last attempt's count.
pub struct Assigned(AtomicI64);

/// What an [`Assigned`] holds before any attempt set it.
const UNASSIGNED: i64 = i64::MIN;

impl Default for Assigned {
    fn default() -> Self {
        Assigned(AtomicI64::new(UNASSIGNED))
    }
}

impl Assigned {
    /// Set (or set again) the number the store assigned.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Release);
    }

    /// The number last assigned, if any.
    pub fn get(&self) -> Option<i64> {
        let value = self.0.load(Ordering::Acquire);
        (value != UNASSIGNED).then_some(value)
    }
}

impl std::fmt::Debug for Assigned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Assigned").field(&self.get()).finish()
    }
}

/// A double-entry movement: `money` leaves `debit` and arrives at `credit`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transfer {
    pub id: String,
    pub kind: TransferKind,
    pub debit: Owner,
    pub credit: Owner,
    pub money: Money,
    /// The payment request, charge, reservation, … this transfer settles.
    pub reference: Option<String>,
    pub description: Option<String>,
    pub at_ms: i64,
    /// Filled in by the store as it writes the transfer: the version of the credited account
    /// after this transfer, which tells the payee's actor whether its loaded state already
    /// includes it. Read after the commit.
    #[serde(skip)]
    pub credit_version: Arc<Assigned>,
}

/// Status of a payment request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    Requested,
    Completed,
    Rejected,
    Cancelled,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::Requested => "requested",
            RequestStatus::Completed => "completed",
            RequestStatus::Rejected => "rejected",
            RequestStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "requested" => Some(RequestStatus::Requested),
            "completed" => Some(RequestStatus::Completed),
            "rejected" => Some(RequestStatus::Rejected),
            "cancelled" => Some(RequestStatus::Cancelled),
            _ => None,
        }
    }
}

/// A request for payment addressed to this wallet's user (the payor).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PaymentRequest {
    pub transaction_id: String,
    pub payor: String,
    pub payee: String,
    pub money: Money,
    pub description: String,
    pub status: RequestStatus,
    pub at_ms: i64,
}

/// A user's account in one currency, in minor units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Posted balance.
    pub balance: i64,
    /// Reserved by holds; not spendable.
    pub held: i64,
    /// Version of the stored row when loaded, or of the last credit applied.
    pub version: i64,
}

impl Account {
    pub fn available(&self) -> i64 {
        self.balance - self.held
    }
}

/// Balances after a command, per currency: (available, total) in minor units.
pub type Balances = BTreeMap<Currency, (i64, i64)>;

/// A hold: funds reserved for a later capture or void.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hold {
    pub id: String,
    pub money: Money,
    pub reference: Option<String>,
}

/// PIN lockout policy.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct PinPolicy {
    /// Wrong PINs in a row that lock PIN payments.
    pub failures_max: u32,
    /// How long the lock lasts.
    pub lock_ms: i64,
}

/// The PIN state of a wallet. The hash itself lives with the user; the actor counts failures.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PinState {
    pub failures: u32,
    pub locked_until_ms: Option<i64>,
}

/// The caller's verdict on a PIN (hashing is too slow for the actor's thread, so the caller
/// verifies it against the stored hash before sending the command).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinCheck {
    Correct,
    Wrong,
    /// The user has no PIN.
    NotSet,
}

/// A user's wallet in memory.
#[derive(Debug)]
pub struct Wallet {
    pub user_id: String,
    pub accounts: BTreeMap<Currency, Account>,
    pub pin: PinState,
    pub pin_policy: PinPolicy,
    /// Requests addressed to this user, by transaction id.
    pub requests: HashMap<String, PaymentRequest>,
    pub holds: HashMap<String, Hold>,
}

/// An entry of the user's feed: becomes a sequenced push on `user:<id>` once committed.
#[derive(Debug, Clone)]
pub struct FeedEntry {
    pub user_id: String,
    pub event: protocol::Event,
    /// Assigned by the store as it writes the entry (per user, gap-free, in commit order).
    /// Read after the commit.
    pub seq: Arc<Assigned>,
}

impl FeedEntry {
    pub fn new(user_id: &str, event: protocol::Event) -> Self {
        FeedEntry {
            user_id: user_id.to_owned(),
            event,
            seq: Arc::default(),
        }
    }
}

/// What a wallet journals.
#[derive(Debug, Clone)]
pub enum Event {
    /// A posted transfer debiting this wallet (or crediting it from a system account).
    Transferred(Transfer),
    /// Funds reserved.
    HoldPlaced {
        user_id: String,
        hold: Hold,
    },
    /// A hold settled: captured into a transfer, or voided.
    HoldSettled {
        user_id: String,
        hold: Hold,
        capture: Option<Transfer>,
    },
    RequestOpened(PaymentRequest),
    RequestClosed {
        transaction_id: String,
        status: RequestStatus,
        at_ms: i64,
    },
    PinChanged {
        user_id: String,
        pin: PinState,
    },
    Feed(FeedEntry),
}

/// Commands to a wallet.
#[derive(Debug)]
pub enum Command {
    Balances,
    /// Money in from outside (the system cash-in account). Opens the account if needed.
    Deposit {
        money: Money,
    },
    /// Money out (to the system cash-out account), PIN required.
    Withdraw {
        money: Money,
        pin: PinCheck,
    },
    /// Pay another user or an app from this wallet.
    Pay(Payment),
    /// Record a request from `payee` for this wallet's user to pay.
    Request(PaymentRequest),
    /// This wallet's user refuses a request.
    Reject {
        transaction_id: String,
    },
    /// The requester withdraws a request addressed to this wallet's user.
    Cancel {
        transaction_id: String,
        requester: String,
    },
    PlaceHold(Hold),
    /// Capture a hold into a transfer to `credit`.
    Capture {
        hold_id: String,
        credit: Owner,
    },
    Void {
        hold_id: String,
    },
}

/// A payment from this wallet.
#[derive(Debug, Clone)]
pub struct Payment {
    pub transfer_id: String,
    pub kind: TransferKind,
    pub credit: Owner,
    pub money: Money,
    pub description: Option<String>,
    /// The request this payment settles, if any (it must be addressed to this wallet).
    pub request: Option<String>,
    /// `None` when the payment needs no PIN (an authenticated app session).
    pub pin: Option<PinCheck>,
}

/// Committed changes other wallets' events make to this one.
#[derive(Debug)]
pub enum Effect {
    Credit(Credit),
}

/// A credit to this wallet, committed in another wallet's batch.
#[derive(Debug, Clone)]
pub struct Credit {
    pub money: Money,
    /// The credited account's version after the credit.
    pub version: i64,
}

/// Why a command was refused. Refusals change nothing (except a wrong PIN, which counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    InsufficientFunds {
        currency: Currency,
        available: i64,
    },
    NoAccount {
        currency: Currency,
    },
    WrongPin {
        remaining: u32,
    },
    PinLocked {
        until_ms: i64,
    },
    PinNotSet,
    UnknownRequest,
    /// The request was already paid.
    AlreadyPaid,
    /// The request is rejected or cancelled.
    RequestClosed {
        status: RequestStatus,
    },
    /// The payment does not match the request it names (payee or amount).
    RequestMismatch,
    /// Only the requester may cancel a request.
    NotRequester,
    UnknownHold,
    /// An id was used before for another request or hold.
    DuplicateId,
    /// A wallet cannot pay itself.
    SelfPayment,
}

/// A wallet's answer: balances after the command, or why it was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Reply {
    Done {
        balances: Balances,
        transfer_id: Option<String>,
    },
    Refused {
        refusal: Refusal,
        balances: Balances,
    },
}

impl Reply {
    pub fn balances(&self) -> &Balances {
        match self {
            Reply::Done { balances, .. } | Reply::Refused { balances, .. } => balances,
        }
    }
}

impl Wallet {
    pub fn new(user_id: String, pin_policy: PinPolicy) -> Self {
        Wallet {
            user_id,
            accounts: BTreeMap::new(),
            pin: PinState::default(),
            pin_policy,
            requests: HashMap::new(),
            holds: HashMap::new(),
        }
    }

    fn balances(&self) -> Balances {
        self.accounts
            .iter()
            .map(|(c, a)| (*c, (a.available(), a.balance)))
            .collect()
    }

    fn me(&self) -> Owner {
        Owner::User(self.user_id.clone())
    }

    fn done(&self, events: Vec<Event>, transfer_id: Option<String>) -> Outcome<Event, Reply> {
        Outcome {
            events,
            reply: Reply::Done {
                balances: self.balances(),
                transfer_id,
            },
        }
    }

    fn refuse(&self, refusal: Refusal, events: Vec<Event>) -> Outcome<Event, Reply> {
        Outcome {
            events,
            reply: Reply::Refused {
                refusal,
                balances: self.balances(),
            },
        }
    }

    fn balance_event(&self, currency: Currency) -> Event {
        let account = self.accounts.get(&currency).copied().unwrap_or_default();
        Event::Feed(FeedEntry::new(
            &self.user_id,
            protocol::Event::Balance {
                currency: currency.code().to_owned(),
                available: crate::money::decimal(account.available(), currency).to_string(),
                total: crate::money::decimal(account.balance, currency).to_string(),
            },
        ))
    }

    /// Check a PIN verdict against the lock; returns the refusal and any event to journal.
    fn check_pin(&mut self, pin: PinCheck) -> Result<Vec<Event>, (Refusal, Vec<Event>)> {
        let now = now_ms();
        if let Some(until) = self.pin.locked_until_ms {
            if until > now {
                return Err((Refusal::PinLocked { until_ms: until }, Vec::new()));
            }
        }
        match pin {
            PinCheck::NotSet => Err((Refusal::PinNotSet, Vec::new())),
            PinCheck::Correct => {
                if self.pin.failures == 0 && self.pin.locked_until_ms.is_none() {
                    return Ok(Vec::new());
                }
                self.pin = PinState::default();
                Ok(vec![Event::PinChanged {
                    user_id: self.user_id.clone(),
                    pin: self.pin.clone(),
                }])
            }
            PinCheck::Wrong => {
                let failures = self.pin.failures + 1;
                let max = self.pin_policy.failures_max.max(1);
                self.pin = if failures >= max {
                    PinState {
                        failures: 0,
                        locked_until_ms: Some(now + self.pin_policy.lock_ms),
                    }
                } else {
                    PinState {
                        failures,
                        locked_until_ms: None,
                    }
                };
                let event = Event::PinChanged {
                    user_id: self.user_id.clone(),
                    pin: self.pin.clone(),
                };
                let refusal = match self.pin.locked_until_ms {
                    Some(until_ms) => Refusal::PinLocked { until_ms },
                    None => Refusal::WrongPin {
                        remaining: max - failures,
                    },
                };
                Err((refusal, vec![event]))
            }
        }
    }

    /// Debit `money` from this wallet if it can afford it.
    fn debit(&mut self, money: Money) -> Result<(), Refusal> {
        let currency = money.currency();
        let Some(account) = self.accounts.get_mut(&currency) else {
            return Err(Refusal::NoAccount { currency });
        };
        if account.available() < money.minor() {
            return Err(Refusal::InsufficientFunds {
                currency,
                available: account.available(),
            });
        }
        account.balance -= money.minor();
        debug_assert!(account.balance >= account.held);
        Ok(())
    }

    fn transfer(&self, p: &Payment, debit: Owner) -> Transfer {
        Transfer {
            id: p.transfer_id.clone(),
            kind: p.kind,
            debit,
            credit: p.credit.clone(),
            money: p.money,
            reference: p.request.clone(),
            description: p.description.clone(),
            at_ms: now_ms(),
            credit_version: Arc::default(),
        }
    }

    fn deposit(&mut self, money: Money) -> Outcome<Event, Reply> {
        let id = new_id();
        let transfer = Transfer {
            id: id.clone(),
            kind: TransferKind::Deposit,
            debit: Owner::System(SystemAccount::CashIn),
            credit: self.me(),
            money,
            reference: None,
            description: None,
            at_ms: now_ms(),
            credit_version: Arc::default(),
        };
        self.accounts.entry(money.currency()).or_default().balance += money.minor();
        let events = vec![
            Event::Transferred(transfer),
            self.balance_event(money.currency()),
        ];
        self.done(events, Some(id))
    }

    fn withdraw(&mut self, money: Money, pin: PinCheck) -> Outcome<Event, Reply> {
        let mut events = match self.check_pin(pin) {
            Ok(events) => events,
            Err((refusal, events)) => return self.refuse(refusal, events),
        };
        if let Err(refusal) = self.debit(money) {
            return self.refuse(refusal, events);
        }
        let id = new_id();
        events.push(Event::Transferred(Transfer {
            id: id.clone(),
            kind: TransferKind::Withdrawal,
            debit: self.me(),
            credit: Owner::System(SystemAccount::CashOut),
            money,
            reference: None,
            description: None,
            at_ms: now_ms(),
            credit_version: Arc::default(),
        }));
        events.push(self.balance_event(money.currency()));
        self.done(events, Some(id))
    }

    fn pay(&mut self, payment: Payment) -> Outcome<Event, Reply> {
        if payment.credit == self.me() {
            return self.refuse(Refusal::SelfPayment, Vec::new());
        }
        let mut events = Vec::new();
        if let Some(pin) = payment.pin {
            match self.check_pin(pin) {
                Ok(pin_events) => events = pin_events,
                Err((refusal, pin_events)) => return self.refuse(refusal, pin_events),
            }
        }
        if let Some(transaction_id) = &payment.request {
            let Some(request) = self.requests.get(transaction_id) else {
                return self.refuse(Refusal::UnknownRequest, events);
            };
            match request.status {
                RequestStatus::Requested => {}
                RequestStatus::Completed => return self.refuse(Refusal::AlreadyPaid, events),
                status => return self.refuse(Refusal::RequestClosed { status }, events),
            }
            if Owner::User(request.payee.clone()) != payment.credit
                || request.money != payment.money
            {
                return self.refuse(Refusal::RequestMismatch, events);
            }
        }
        if let Err(refusal) = self.debit(payment.money) {
            return self.refuse(refusal, events);
        }
        let transfer = self.transfer(&payment, self.me());
        let at_ms = transfer.at_ms;
        if let Owner::User(payee) = &transfer.credit {
            events.push(Event::Feed(FeedEntry::new(
                payee,
                protocol::Event::PaymentReceived {
                    transfer_id: transfer.id.clone(),
                    from: self.user_id.clone(),
                    amount: transfer.money.amount().to_string(),
                    currency: transfer.money.currency().code().to_owned(),
                    description: transfer.description.clone(),
                },
            )));
        }
        events.push(Event::Transferred(transfer));
        if let Some(transaction_id) = &payment.request {
            if let Some(request) = self.requests.get_mut(transaction_id) {
                request.status = RequestStatus::Completed;
            }
            events.push(Event::RequestClosed {
                transaction_id: transaction_id.clone(),
                status: RequestStatus::Completed,
                at_ms,
            });
            let closed = protocol::Event::PaymentRequestClosed {
                transaction_id: transaction_id.clone(),
                status: RequestStatus::Completed.as_str().to_owned(),
            };
            if let Owner::User(payee) = &payment.credit {
                for user in [self.user_id.clone(), payee.clone()] {
                    events.push(Event::Feed(FeedEntry::new(&user, closed.clone())));
                }
            }
        }
        events.push(self.balance_event(payment.money.currency()));
        self.done(events, Some(payment.transfer_id))
    }

    fn request(&mut self, request: PaymentRequest) -> Outcome<Event, Reply> {
        if self.requests.contains_key(&request.transaction_id) {
            return self.refuse(Refusal::DuplicateId, Vec::new());
        }
        let requested = protocol::Event::PaymentRequested {
            transaction_id: request.transaction_id.clone(),
            payor: request.payor.clone(),
            payee: request.payee.clone(),
            amount: request.money.amount().to_string(),
            currency: request.money.currency().code().to_owned(),
            description: request.description.clone(),
        };
        let feeds = [self.user_id.clone(), request.payee.clone()]
            .into_iter()
            .map(|user| Event::Feed(FeedEntry::new(&user, requested.clone())));
        self.requests
            .insert(request.transaction_id.clone(), request.clone());
        let mut events = vec![Event::RequestOpened(request)];
        events.extend(feeds);
        self.done(events, None)
    }

    fn close_request(
        &mut self,
        transaction_id: &str,
        requester: Option<&str>,
        status: RequestStatus,
    ) -> Outcome<Event, Reply> {
        let Some(request) = self.requests.get_mut(transaction_id) else {
            return self.refuse(Refusal::UnknownRequest, Vec::new());
        };
        if requester.is_some_and(|r| r != request.payee) {
            return self.refuse(Refusal::NotRequester, Vec::new());
        }
        match request.status {
            RequestStatus::Requested => {}
            RequestStatus::Completed => return self.refuse(Refusal::AlreadyPaid, Vec::new()),
            status => return self.refuse(Refusal::RequestClosed { status }, Vec::new()),
        }
        request.status = status;
        let payee = request.payee.clone();
        let event = Event::RequestClosed {
            transaction_id: transaction_id.to_owned(),
            status,
            at_ms: now_ms(),
        };
        let change = protocol::Event::PaymentRequestClosed {
            transaction_id: transaction_id.to_owned(),
            status: status.as_str().to_owned(),
        };
        let feeds = [self.user_id.clone(), payee]
            .into_iter()
            .map(|user| Event::Feed(FeedEntry::new(&user, change.clone())));
        let mut events = vec![event];
        events.extend(feeds);
        self.done(events, None)
    }

    fn place_hold(&mut self, hold: Hold) -> Outcome<Event, Reply> {
        if self.holds.contains_key(&hold.id) {
            return self.refuse(Refusal::DuplicateId, Vec::new());
        }
        let currency = hold.money.currency();
        let Some(account) = self.accounts.get_mut(&currency) else {
            return self.refuse(Refusal::NoAccount { currency }, Vec::new());
        };
        if account.available() < hold.money.minor() {
            let available = account.available();
            return self.refuse(
                Refusal::InsufficientFunds {
                    currency,
                    available,
                },
                Vec::new(),
            );
        }
        account.held += hold.money.minor();
        self.holds.insert(hold.id.clone(), hold.clone());
        let events = vec![
            Event::HoldPlaced {
                user_id: self.user_id.clone(),
                hold,
            },
            self.balance_event(currency),
        ];
        self.done(events, None)
    }

    fn settle_hold(&mut self, hold_id: &str, credit: Option<Owner>) -> Outcome<Event, Reply> {
        if credit.as_ref() == Some(&self.me()) {
            // A capture to oneself would debit and credit one account: nothing to capture.
            return self.refuse(Refusal::SelfPayment, Vec::new());
        }
        let Some(hold) = self.holds.remove(hold_id) else {
            return self.refuse(Refusal::UnknownHold, Vec::new());
        };
        let currency = hold.money.currency();
        if let Some(account) = self.accounts.get_mut(&currency) {
            account.held -= hold.money.minor();
            if credit.is_some() {
                account.balance -= hold.money.minor();
            }
        }
        let capture = credit.map(|credit| Transfer {
            id: new_id(),
            kind: TransferKind::Hold,
            debit: self.me(),
            credit,
            money: hold.money,
            reference: hold.reference.clone(),
            description: None,
            at_ms: now_ms(),
            credit_version: Arc::default(),
        });
        let transfer_id = capture.as_ref().map(|t| t.id.clone());
        let events = vec![
            Event::HoldSettled {
                user_id: self.user_id.clone(),
                hold,
                capture,
            },
            self.balance_event(currency),
        ];
        self.done(events, transfer_id)
    }
}

/// A random id for records the wallet creates itself.
fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Entity for Wallet {
    const KIND: &'static str = "wallet";
    type Id = String;
    type Command = Command;
    type Reply = Reply;
    type Event = Event;
    type Effect = Effect;

    fn handle(&mut self, command: Command) -> Outcome<Event, Reply> {
        match command {
            Command::Balances => Outcome::reply(Reply::Done {
                balances: self.balances(),
                transfer_id: None,
            }),
            Command::Deposit { money } => self.deposit(money),
            Command::Withdraw { money, pin } => self.withdraw(money, pin),
            Command::Pay(payment) => self.pay(payment),
            Command::Request(request) => self.request(request),
            Command::Reject { transaction_id } => {
                self.close_request(&transaction_id, None, RequestStatus::Rejected)
            }
            Command::Cancel {
                transaction_id,
                requester,
            } => self.close_request(&transaction_id, Some(&requester), RequestStatus::Cancelled),
            Command::PlaceHold(hold) => self.place_hold(hold),
            Command::Capture { hold_id, credit } => self.settle_hold(&hold_id, Some(credit)),
            Command::Void { hold_id } => self.settle_hold(&hold_id, None),
        }
    }

    fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Credit(credit) => {
                let account = self.accounts.entry(credit.money.currency()).or_default();
                // Loaded after the credit committed: it is already in the balance.
                if credit.version > account.version {
                    account.balance += credit.money.minor();
                    account.version = credit.version;
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const USER: &str = "alice";
    const START: i64 = 10_000;

    /// Alice with 100.00 EVG and 50.00 USD, no holds.
    fn wallet() -> Wallet {
        let account = |balance| Account {
            balance,
            held: 0,
            version: 3,
        };
        Wallet {
            user_id: USER.to_owned(),
            accounts: BTreeMap::from([
                (Currency::EVG, account(START)),
                (Currency::USD, account(5_000)),
            ]),
            pin: PinState::default(),
            pin_policy: PinPolicy {
                failures_max: 3,
                lock_ms: 60_000,
            },
            requests: HashMap::new(),
            holds: HashMap::new(),
        }
    }

    fn evg(minor: i64) -> Money {
        Money::from_minor(minor, Currency::EVG).expect("positive")
    }

    fn hold(id: &str, money: Money) -> Hold {
        Hold {
            id: id.to_owned(),
            money,
            reference: Some(format!("reservation-{id}")),
        }
    }

    fn place(w: &mut Wallet, id: &str, minor: i64) -> Outcome<Event, Reply> {
        w.handle(Command::PlaceHold(hold(id, evg(minor))))
    }

    fn capture(w: &mut Wallet, id: &str, credit: Owner) -> Outcome<Event, Reply> {
        w.handle(Command::Capture {
            hold_id: id.to_owned(),
            credit,
        })
    }

    fn void(w: &mut Wallet, id: &str) -> Outcome<Event, Reply> {
        w.handle(Command::Void {
            hold_id: id.to_owned(),
        })
    }

    fn pay_app(w: &mut Wallet, minor: i64) -> Outcome<Event, Reply> {
        w.handle(Command::Pay(Payment {
            transfer_id: "t-pay".to_owned(),
            kind: TransferKind::Payment,
            credit: Owner::App("muvi".to_owned()),
            money: evg(minor),
            description: None,
            request: None,
            pin: None,
        }))
    }

    fn evg_account(w: &Wallet) -> Account {
        w.accounts[&Currency::EVG]
    }

    /// The pending holds, comparable.
    fn pending(w: &Wallet) -> BTreeMap<String, (Money, Option<String>)> {
        w.holds
            .iter()
            .map(|(id, h)| (id.clone(), (h.money, h.reference.clone())))
            .collect()
    }

    fn refusal(outcome: &Outcome<Event, Reply>) -> Refusal {
        match &outcome.reply {
            Reply::Refused { refusal, .. } => refusal.clone(),
            done => panic!("expected a refusal, got {done:?}"),
        }
    }

    fn transfer_id(outcome: &Outcome<Event, Reply>) -> Option<String> {
        match &outcome.reply {
            Reply::Done { transfer_id, .. } => transfer_id.clone(),
            refused => panic!("expected success, got {refused:?}"),
        }
    }

    /// The one `HoldSettled` event of an outcome.
    fn settled(outcome: &Outcome<Event, Reply>) -> (&str, &Hold, Option<&Transfer>) {
        let found: Vec<_> = outcome
            .events
            .iter()
            .filter_map(|e| match e {
                Event::HoldSettled {
                    user_id,
                    hold,
                    capture,
                } => Some((user_id.as_str(), hold, capture.as_ref())),
                _ => None,
            })
            .collect();
        assert_eq!(found.len(), 1, "{:?}", outcome.events);
        found[0]
    }

    fn balance_push(outcome: &Outcome<Event, Reply>) -> protocol::Event {
        match outcome.events.last() {
            Some(Event::Feed(entry)) if entry.user_id == USER => entry.event.clone(),
            other => panic!("expected the owner's balance push last, got {other:?}"),
        }
    }

    /// A refused command left accounts and holds as they were and journals nothing.
    fn assert_nothing_changed(
        outcome: &Outcome<Event, Reply>,
        w: &Wallet,
        accounts: &BTreeMap<Currency, Account>,
        holds: &BTreeMap<String, (Money, Option<String>)>,
    ) {
        assert!(outcome.events.is_empty(), "{:?}", outcome.events);
        assert_eq!(&w.accounts, accounts);
        assert_eq!(&pending(w), holds);
        let expected: Balances = accounts
            .iter()
            .map(|(c, a)| (*c, (a.available(), a.balance)))
            .collect();
        assert_eq!(outcome.reply.balances(), &expected);
    }

    #[test]
    fn a_hold_reduces_what_can_be_spent_but_not_the_balance() {
        let mut w = wallet();
        let usd_before = w.accounts[&Currency::USD];

        let outcome = place(&mut w, "h1", 3_000);

        assert_eq!(
            outcome.reply,
            Reply::Done {
                balances: BTreeMap::from([
                    (Currency::EVG, (7_000, START)),
                    (Currency::USD, (5_000, 5_000)),
                ]),
                transfer_id: None,
            }
        );
        assert_eq!(outcome.events.len(), 2, "{:?}", outcome.events);
        match &outcome.events[0] {
            Event::HoldPlaced { user_id, hold } => {
                assert_eq!(user_id, USER);
                assert_eq!(hold.id, "h1");
                assert_eq!(hold.money, evg(3_000));
                assert_eq!(hold.reference.as_deref(), Some("reservation-h1"));
            }
            other => panic!("expected HoldPlaced, got {other:?}"),
        }
        assert_eq!(
            balance_push(&outcome),
            protocol::Event::Balance {
                currency: "EVG".to_owned(),
                available: "70.00".to_owned(),
                total: "100.00".to_owned(),
            }
        );
        let account = evg_account(&w);
        assert_eq!((account.balance, account.held), (START, 3_000));
        assert_eq!(account.available(), 7_000);
        assert_eq!(w.accounts[&Currency::USD], usd_before);
        assert_eq!(
            pending(&w),
            BTreeMap::from([(
                "h1".to_owned(),
                (evg(3_000), Some("reservation-h1".to_owned()))
            )])
        );
    }

    #[test]
    fn a_payment_the_balance_covers_but_the_available_amount_does_not_is_refused() {
        let mut w = wallet();
        place(&mut w, "h1", 3_000);
        let (accounts, holds) = (w.accounts.clone(), pending(&w));

        let outcome = pay_app(&mut w, 7_001);

        assert_eq!(
            refusal(&outcome),
            Refusal::InsufficientFunds {
                currency: Currency::EVG,
                available: 7_000,
            }
        );
        assert_nothing_changed(&outcome, &w, &accounts, &holds);
    }

    #[test]
    fn a_withdrawal_the_balance_covers_but_the_available_amount_does_not_is_refused() {
        let mut w = wallet();
        place(&mut w, "h1", 3_000);
        let (accounts, holds) = (w.accounts.clone(), pending(&w));

        let outcome = w.handle(Command::Withdraw {
            money: evg(7_001),
            pin: PinCheck::Correct,
        });

        assert_eq!(
            refusal(&outcome),
            Refusal::InsufficientFunds {
                currency: Currency::EVG,
                available: 7_000,
            }
        );
        assert_nothing_changed(&outcome, &w, &accounts, &holds);
    }

    #[test]
    fn a_payment_of_exactly_the_available_amount_leaves_the_held_amount_in_place() {
        let mut w = wallet();
        place(&mut w, "h1", 3_000);

        let outcome = pay_app(&mut w, 7_000);

        assert_eq!(transfer_id(&outcome).as_deref(), Some("t-pay"));
        let account = evg_account(&w);
        assert_eq!((account.balance, account.held), (3_000, 3_000));
        assert_eq!(account.available(), 0);
    }

    #[test]
    fn a_hold_larger_than_what_is_available_is_refused_and_changes_nothing() {
        let mut w = wallet();
        place(&mut w, "h1", 6_000);
        let (accounts, holds) = (w.accounts.clone(), pending(&w));

        let outcome = place(&mut w, "h2", 4_001);

        assert_eq!(
            refusal(&outcome),
            Refusal::InsufficientFunds {
                currency: Currency::EVG,
                available: 4_000,
            }
        );
        assert_nothing_changed(&outcome, &w, &accounts, &holds);
        assert_eq!(
            (evg_account(&w).balance, evg_account(&w).held),
            (START, 6_000)
        );
    }

    #[test]
    fn a_hold_of_exactly_what_is_available_is_placed() {
        let mut w = wallet();

        let outcome = place(&mut w, "h1", START);

        assert_eq!(transfer_id(&outcome), None);
        assert_eq!(
            (evg_account(&w).balance, evg_account(&w).held),
            (START, START)
        );
        assert_eq!(evg_account(&w).available(), 0);
    }

    #[test]
    fn a_hold_whose_id_is_pending_is_refused_as_a_duplicate_and_changes_nothing() {
        let mut w = wallet();
        place(&mut w, "h1", 1_000);
        let (accounts, holds) = (w.accounts.clone(), pending(&w));

        let outcome = place(&mut w, "h1", 500);

        assert_eq!(refusal(&outcome), Refusal::DuplicateId);
        assert_nothing_changed(&outcome, &w, &accounts, &holds);
        assert_eq!(w.holds["h1"].money, evg(1_000));
    }

    #[test]
    fn capturing_a_hold_pays_its_amount_to_the_credited_owner() {
        let mut w = wallet();
        place(&mut w, "h1", 3_000);
        let before = evg_account(&w);
        let merchant = Owner::App("muvi".to_owned());

        let outcome = capture(&mut w, "h1", merchant.clone());

        let (user_id, hold, transfer) = settled(&outcome);
        assert_eq!(user_id, USER);
        assert_eq!(hold.id, "h1");
        assert_eq!(hold.money, evg(3_000));
        let transfer = transfer.expect("a capture makes a transfer");
        assert_eq!(transfer.kind, TransferKind::Hold);
        assert_eq!(transfer.debit, Owner::User(USER.to_owned()));
        assert_eq!(transfer.credit, merchant);
        assert_eq!(transfer.money, evg(3_000));
        assert_eq!(transfer.reference.as_deref(), Some("reservation-h1"));
        assert!(!transfer.id.is_empty());
        assert_eq!(transfer_id(&outcome).as_deref(), Some(transfer.id.as_str()));
        assert_eq!(
            balance_push(&outcome),
            protocol::Event::Balance {
                currency: "EVG".to_owned(),
                available: "70.00".to_owned(),
                total: "70.00".to_owned(),
            }
        );

        let after = evg_account(&w);
        assert_eq!((after.balance, after.held), (7_000, 0));
        assert_eq!(after.available(), before.available());
        assert!(w.holds.is_empty());
        // Money is conserved: what left this wallet is exactly what the transfer credits.
        assert_eq!(before.balance - after.balance, transfer.money.minor());
        assert_eq!(before.held - after.held, transfer.money.minor());
    }

    #[test]
    fn capturing_one_hold_leaves_the_others_held() {
        let mut w = wallet();
        place(&mut w, "h1", 3_000);
        place(&mut w, "h2", 2_000);

        capture(&mut w, "h1", Owner::App("muvi".to_owned()));

        assert_eq!(
            (evg_account(&w).balance, evg_account(&w).held),
            (7_000, 2_000)
        );
        assert_eq!(
            pending(&w).keys().collect::<Vec<_>>(),
            vec![&"h2".to_owned()]
        );
    }

    #[test]
    fn voiding_a_hold_releases_it_and_moves_no_money() {
        let mut w = wallet();
        place(&mut w, "h1", 3_000);

        let outcome = void(&mut w, "h1");

        let (user_id, hold, transfer) = settled(&outcome);
        assert_eq!(user_id, USER);
        assert_eq!(hold.id, "h1");
        assert_eq!(hold.money, evg(3_000));
        assert!(transfer.is_none(), "{transfer:?}");
        assert!(
            !outcome
                .events
                .iter()
                .any(|e| matches!(e, Event::Transferred(_))),
            "{:?}",
            outcome.events
        );
        assert_eq!(transfer_id(&outcome), None);
        assert_eq!(
            outcome.reply.balances()[&Currency::EVG],
            (START, START),
            "available is back to the balance"
        );
        assert_eq!(
            balance_push(&outcome),
            protocol::Event::Balance {
                currency: "EVG".to_owned(),
                available: "100.00".to_owned(),
                total: "100.00".to_owned(),
            }
        );
        assert_eq!((evg_account(&w).balance, evg_account(&w).held), (START, 0));
        assert!(w.holds.is_empty());
    }

    #[test]
    fn settling_an_unknown_hold_is_refused_and_changes_nothing() {
        let mut w = wallet();
        place(&mut w, "h1", 3_000);
        let (accounts, holds) = (w.accounts.clone(), pending(&w));

        let captured = capture(&mut w, "nope", Owner::App("muvi".to_owned()));
        assert_eq!(refusal(&captured), Refusal::UnknownHold);
        assert_nothing_changed(&captured, &w, &accounts, &holds);

        let voided = void(&mut w, "nope");
        assert_eq!(refusal(&voided), Refusal::UnknownHold);
        assert_nothing_changed(&voided, &w, &accounts, &holds);
    }

    #[test]
    fn a_captured_hold_cannot_be_settled_again() {
        let mut w = wallet();
        place(&mut w, "h1", 3_000);
        capture(&mut w, "h1", Owner::App("muvi".to_owned()));
        let (accounts, holds) = (w.accounts.clone(), pending(&w));
        assert_eq!(
            (
                accounts[&Currency::EVG].balance,
                accounts[&Currency::EVG].held
            ),
            (7_000, 0)
        );

        let again = capture(&mut w, "h1", Owner::App("muvi".to_owned()));
        assert_eq!(refusal(&again), Refusal::UnknownHold);
        assert_nothing_changed(&again, &w, &accounts, &holds);

        let voided = void(&mut w, "h1");
        assert_eq!(refusal(&voided), Refusal::UnknownHold);
        assert_nothing_changed(&voided, &w, &accounts, &holds);
    }

    #[test]
    fn capturing_a_hold_to_its_own_wallet_is_refused_and_keeps_it_held() {
        let mut w = wallet();
        place(&mut w, "h1", 3_000);
        let (accounts, holds) = (w.accounts.clone(), pending(&w));
        let own = capture(&mut w, "h1", Owner::User(USER.to_owned()));
        assert_eq!(refusal(&own), Refusal::SelfPayment);
        assert_nothing_changed(&own, &w, &accounts, &holds);
        assert_eq!(w.accounts[&Currency::EVG].held, 3_000);
    }

    #[test]
    fn a_voided_hold_cannot_be_settled_again() {
        let mut w = wallet();
        place(&mut w, "h1", 3_000);
        void(&mut w, "h1");
        let (accounts, holds) = (w.accounts.clone(), pending(&w));
        assert_eq!(
            (
                accounts[&Currency::EVG].balance,
                accounts[&Currency::EVG].held
            ),
            (START, 0)
        );

        let captured = capture(&mut w, "h1", Owner::App("muvi".to_owned()));
        assert_eq!(refusal(&captured), Refusal::UnknownHold);
        assert_nothing_changed(&captured, &w, &accounts, &holds);

        let again = void(&mut w, "h1");
        assert_eq!(refusal(&again), Refusal::UnknownHold);
        assert_nothing_changed(&again, &w, &accounts, &holds);
    }

    #[test]
    fn a_hold_in_a_currency_without_an_account_is_refused() {
        let mut w = wallet();
        let (accounts, holds) = (w.accounts.clone(), pending(&w));
        let eur = Currency::parse("EUR").expect("known");

        let outcome = w.handle(Command::PlaceHold(hold(
            "h1",
            Money::from_minor(100, eur).expect("positive"),
        )));

        assert_eq!(refusal(&outcome), Refusal::NoAccount { currency: eur });
        assert_nothing_changed(&outcome, &w, &accounts, &holds);
        assert!(!w.accounts.contains_key(&eur));
    }
}
