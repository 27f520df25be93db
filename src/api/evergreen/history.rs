//! Being written.

use utoipa_actix_web::scope::Scope;

/// Register this file's routes.
pub fn routes<T>(scope: Scope<T>) -> Scope<T>
where
    T: actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Error = actix_web::Error,
        InitError = (),
    >,
{
    scope
}
