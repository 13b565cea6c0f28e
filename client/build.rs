//! `cfg(local_agent)`: the in-process agent (`clawops local`, `clawops demo`) is compiled in,
//! which takes the `local` feature and a Linux target.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(local_agent)");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux");
    if linux && std::env::var_os("CARGO_FEATURE_LOCAL").is_some() {
        println!("cargo::rustc-cfg=local_agent");
    }
}
