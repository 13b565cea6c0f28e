//! The engine's data types the agent reads or fills in (create bodies, inspect results, build
//! progress). Named through the adapter, so that only this module knows where they come from.
pub use bollard::{
    moby::buildkit::v1::{StatusResponse, Vertex, VertexLog},
    models::{
        BuildInfo, BuildInfoAux, ChangeType, ContainerCreateBody, ContainerInspectResponse,
        ContainerStateStatusEnum, ContainerStatsResponse, ContainerSummary,
        ContainerSummaryStateEnum, EndpointSettings, EventMessage, FilesystemChange, HealthConfig,
        HealthStatusEnum, HostConfig, HostConfigLogConfig, ImageInspect, ImageSummary, Mount,
        MountType, NetworkCreateRequest, NetworkingConfig, PortBinding, RestartPolicy,
        RestartPolicyNameEnum, SystemInfo, SystemVersion, VolumeCreateRequest,
    },
};
