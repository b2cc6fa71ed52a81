//! Compiles `proto/stratus/v1/*.proto` with protox (pure Rust, no system `protoc`) and
//! writes the descriptor set that feeds the gRPC reflection service.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/stratus/v1/stratus.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("stratus_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    // Messages that carry key material or a credential get hand-written, redacting Debug impls
    // (src/redact.rs) instead of the derived ones.
    tonic_prost_build::configure()
        .bytes(".")
        .skip_debug([
            ".stratus.v1.PutHeader",
            ".stratus.v1.GetRequest",
            ".stratus.v1.ImportKeyRequest",
            ".stratus.v1.CreateTokenResponse",
        ])
        .compile_fds(fds)?;
    Ok(())
}
