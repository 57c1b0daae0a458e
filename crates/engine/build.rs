// The store's migrations are embedded at compile time (`sqlx::migrate!`): a new or edited one
// must rebuild this crate, which cargo only knows when told.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
