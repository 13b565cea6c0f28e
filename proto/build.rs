//! Compiles `proto/clawops.proto` with protox (pure Rust, so no system `protoc` is needed) and
//! generates the tonic client and server, plus the descriptor set that server reflection serves.
use std::{env, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/clawops.proto");
    let descriptors = protox::compile(["clawops.proto"], ["proto"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("clawops_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Log data is passed through without a copy.
        .bytes(".clawops.v1.LogLine.data")
        // Session streams too: stdin and output pass through without a copy.
        .bytes(".clawops.v1.SessionInput")
        .bytes(".clawops.v1.SessionOutput")
        .compile_fds(descriptors)?;
    Ok(())
}
