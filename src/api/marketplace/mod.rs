//! The rental marketplace dialect (seed 003): nine services under `/{service}-api`, sharing one
//! envelope, one error shape and the token locations. Condensed in `shared/spec/airbnb-*.md`.

pub mod auth;
pub mod body;
pub mod booking;
pub mod booking_records;
pub mod catalog;
pub mod catalog_texts;
pub mod envelope;
pub mod error;
pub mod messaging;
pub mod notification;
pub mod permissions;
pub mod query;
pub mod reviews;

use actix_web::web;
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

pub use envelope::Envelope;
pub use error::MarketError;

/// The nine services, each mounted at `/{name}-api`.
pub const SERVICES: [&str; 9] = [
    "auth",
    "messaging",
    "propertycatalog",
    "bookingmanagement",
    "reviewsystem",
    "platformadmin",
    "agenthub",
    "bff",
    "notification",
];

/// JSON bodies: bounded, and every parse failure answered in the marketplace error shape.
pub fn json_config(body_bytes_max: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(body_bytes_max)
        .error_handler(|error, _req| MarketError::from_json_error(&error).into())
}

/// Register every marketplace service.
pub fn configure(cfg: &mut ServiceConfig<'_>, body_bytes_max: usize) {
    for service in SERVICES {
        let mount = format!("/{service}-api");
        let mut mounted = scope::scope(mount.as_str())
            .app_data(json_config(body_bytes_max))
            .service(auth::currentuser)
            .service(permissions::permissions)
            .service(permissions::permission_scope);
        if service == "auth" {
            mounted = mounted
                .service(auth::register_user)
                .service(auth::login)
                .service(auth::logout)
                .service(auth::publickey)
                .service(auth::relogin);
        }
        if service == "messaging" {
            mounted = mounted
                .service(messaging::create_thread)
                .service(messaging::get_thread)
                .service(messaging::list_threads)
                .service(messaging::update_thread)
                .service(messaging::delete_thread)
                .service(messaging::create_message)
                .service(messaging::get_message)
                .service(messaging::update_message)
                .service(messaging::delete_message)
                .service(messaging::get_thread_messages)
                .service(messaging::got_thread_messages)
                .service(messaging::create_report)
                .service(messaging::get_report)
                .service(messaging::list_reports)
                .service(messaging::update_report);
        }
        if service == "propertycatalog" {
            // Listings and listing calendars (catalog.rs).
            mounted = mounted
                .service(catalog::create_listing)
                .service(catalog::update_listing)
                .service(catalog::delete_listing)
                .service(catalog::get_listing)
                .service(catalog::list_listings)
                .service(catalog::create_day)
                .service(catalog::update_day)
                .service(catalog::delete_day)
                .service(catalog::get_day)
                .service(catalog::list_days);
        }
        if service == "propertycatalog" {
            // Amenities and locale texts (catalog_texts.rs).
            mounted = mounted
                .service(catalog_texts::create_amenity)
                .service(catalog_texts::get_amenity)
                .service(catalog_texts::list_amenities)
                .service(catalog_texts::update_amenity)
                .service(catalog_texts::delete_amenity)
                .service(catalog_texts::create_locale_text)
                .service(catalog_texts::get_locale_text)
                .service(catalog_texts::list_locale_texts)
                .service(catalog_texts::update_locale_text)
                .service(catalog_texts::delete_locale_text);
        }
        if service == "bookingmanagement" {
            // Reservations and their payment flow (booking.rs).
            mounted = mounted
                .service(booking::create_reservation)
                .service(booking::get_reservation)
                .service(booking::list_reservations)
                .service(booking::update_reservation)
                .service(booking::delete_reservation)
                .service(booking::start_payment)
                .service(booking::refresh_payment)
                .service(booking::callback_payment);
        }
        if service == "bookingmanagement" {
            // Payment records, disputes, reservation payments, customers, methods
            // (booking_records.rs).
            mounted = mounted
                .service(booking_records::create_payment_record)
                .service(booking_records::get_payment_record)
                .service(booking_records::list_payment_records)
                .service(booking_records::create_dispute)
                .service(booking_records::get_dispute)
                .service(booking_records::list_disputes)
                .service(booking_records::update_dispute)
                .service(booking_records::get_reservation_payment)
                .service(booking_records::list_reservation_payments)
                .service(booking_records::create_reservation_payment)
                .service(booking_records::update_reservation_payment)
                .service(booking_records::delete_reservation_payment)
                .service(booking_records::get_reservation_payment_by_order)
                .service(booking_records::get_reservation_payment_by_payment)
                .service(booking_records::get_payment_customer)
                .service(booking_records::list_payment_customers)
                .service(booking_records::list_payment_customer_methods);
        }
        if service == "reviewsystem" {
            // Reviews and aggregates (reviews.rs).
            mounted = mounted
                .service(reviews::create_review)
                .service(reviews::get_review)
                .service(reviews::list_reviews)
                .service(reviews::update_review)
                .service(reviews::delete_review)
                .service(reviews::get_aggregate)
                .service(reviews::list_aggregates);
        }
        if service == "notification" {
            mounted = mounted
                .service(notification::register_device)
                .service(notification::unregister_device)
                .service(notification::list_notifications)
                .service(notification::send_notification)
                .service(notification::mark_seen);
        }
        cfg.service(mounted);
    }
    // Outside the service's mount: an operator's view, beside the other `/admin` routes.
    cfg.service(notification::push_deliveries);
}
