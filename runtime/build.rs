//! refinery embeds `migrations/` at compile time; without this, a new migration file would not
//! rebuild the crate and the binaries would silently miss it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
