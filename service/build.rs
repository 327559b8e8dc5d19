//! Rebuilds this crate when a migration is added or changed: `sqlx::migrate!` embeds
//! `schemas/migrations` at compile time, and cargo does not otherwise know to look there
//! (a test binary would run with the migrations of its last build).

fn main() {
    println!("cargo:rerun-if-changed=../schemas/migrations");
}
