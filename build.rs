//! The migrations are embedded at compile time (`sqlx::migrate!`), so a new or changed
//! migration must rebuild the crate; without this, cargo sees no source change and the binary
//! keeps the old set (sqlx's documented build script).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
