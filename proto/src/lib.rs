//! Generated types of the clawops agent API (`proto/clawops.proto`, package `clawops.v1`).

#![allow(clippy::large_enum_variant, clippy::derive_partial_eq_without_eq)]

pub mod v1 {
    tonic::include_proto!("clawops.v1");

    /// Encoded `FileDescriptorSet` of the API, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/clawops_descriptor.bin"));

    /// Fully qualified name of the service, as health checks and reflection name it.
    pub const SERVICE_NAME: &str = "clawops.v1.Agent";
}

pub use prost_types::Timestamp;

pub mod machine_types;

/// The agent's port on the VM's loopback, when agent.toml does not set `listen`.
pub const DEFAULT_AGENT_PORT: u16 = 18777;

/// Where the agent (and `clawops local`) read their configuration by default.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/clawops/agent.toml";
