//! `clawops run SERVICE [-- ARGS…]`: what `docker compose run --rm` does. The container comes
//! from the service's compose definition (image, environment, volumes, user, entrypoint,
//! `network_mode: service:…`), checked against the deploy policy like Up; it publishes no ports
//! (the gateway holds them) and has no restart policy, and it is named
//! `<project>-<service>-run-<12 hex>` and labelled `com.docker.compose.oneoff=True` as compose v2
//! does, so `docker compose ps` on the VM leaves it out.
use super::{Process, Session, SessionError, SessionRequest, Started};
use crate::{
    compose::model::Project,
    docker::{
        Engine, LABEL_NUMBER, LABEL_ONEOFF, TempContainer,
        models::{ContainerCreateBody, EndpointSettings},
    },
    up::containers,
};

/// compose v2's label holding a one-off container's full random suffix.
pub const LABEL_SLUG: &str = "com.docker.compose.slug";

/// Creates the one-off container, attaches to it and starts it. A missing image is refused
/// (nothing is pulled here); nothing running is touched.
pub async fn open(
    project: &Project,
    engine: &Engine,
    req: &SessionRequest,
) -> Result<Session, SessionError> {
    let spec = containers::service_spec(engine, project, &req.service, None).await?;
    containers::ensure_resources(engine, project, std::slice::from_ref(&req.service)).await?;
    let slug = uuid::Uuid::new_v4().simple().to_string();
    let name = format!("{}-{}-run-{}", project.name, req.service, &slug[..12]);
    let body = one_off_body(spec.body, req, &slug);
    let container = TempContainer::create_named(engine, &name, "one-off", body).await?;
    let attached = engine.attach(container.id(), req.stdin).await?;
    engine.start(container.id()).await?;
    if let (true, Some(size)) = (req.tty, req.size) {
        // The container may already have exited; its output still comes.
        if let Err(e) = engine.resize_container_tty(container.id(), size).await {
            tracing::debug!(error = %e, "initial resize failed");
        }
    }
    Ok(Session {
        engine: engine.clone(),
        started: Started {
            container_id: container.id().to_owned(),
            container_name: name,
            exec_id: None,
        },
        process: Process::OneOff(container),
        attached,
    })
}

/// The service's create options, turned into a one-off's.
fn one_off_body(
    mut body: ContainerCreateBody,
    req: &SessionRequest,
    slug: &str,
) -> ContainerCreateBody {
    if !req.argv.is_empty() {
        body.cmd = Some(req.argv.clone());
    }
    body.env
        .get_or_insert_with(Vec::new)
        .extend(req.env.iter().cloned());
    body.tty = Some(req.tty);
    body.open_stdin = Some(req.stdin);
    body.stdin_once = Some(req.stdin);
    body.attach_stdin = Some(req.stdin);
    body.attach_stdout = Some(true);
    body.attach_stderr = Some(true);
    if let Some(labels) = body.labels.as_mut() {
        labels.insert(LABEL_ONEOFF.into(), "True".into());
        labels.insert(LABEL_SLUG.into(), slug.to_owned());
        labels.insert(LABEL_NUMBER.into(), "1".into());
    }
    if let Some(host) = body.host_config.as_mut() {
        // `docker compose run` publishes no ports unless asked: the service's own container
        // holds them. A one-off is never restarted.
        host.port_bindings = None;
        host.restart_policy = None;
    }
    // The service's DNS aliases stay with the service's container.
    if let Some(endpoints) = body
        .networking_config
        .as_mut()
        .and_then(|n| n.endpoints_config.as_mut())
    {
        endpoints
            .values_mut()
            .for_each(|e| *e = EndpointSettings::default());
    }
    body
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::{
        docker::models::{HostConfig, NetworkingConfig, PortBinding, RestartPolicy},
        session::Kind,
    };

    #[test]
    fn a_one_off_publishes_nothing_and_carries_the_command() {
        let body = ContainerCreateBody {
            cmd: Some(vec!["gateway".into()]),
            env: Some(vec!["A=1".into()]),
            labels: Some(HashMap::from([(LABEL_ONEOFF.into(), "False".into())])),
            host_config: Some(HostConfig {
                port_bindings: Some(HashMap::from([(
                    "18789/tcp".into(),
                    Some(vec![PortBinding::default()]),
                )])),
                restart_policy: Some(RestartPolicy::default()),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    "p_default".into(),
                    EndpointSettings {
                        aliases: Some(vec!["gateway".into()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let req = SessionRequest {
            kind: Kind::Run,
            service: "gateway".into(),
            argv: vec!["onboard".into()],
            env: vec!["B=2".into()],
            tty: true,
            stdin: true,
            size: None,
        };
        let out = one_off_body(body, &req, "abc");
        assert_eq!(out.cmd, Some(vec!["onboard".to_string()]));
        assert_eq!(out.env, Some(vec!["A=1".to_string(), "B=2".to_string()]));
        assert_eq!(out.tty, Some(true));
        assert_eq!(out.stdin_once, Some(true));
        let labels = out.labels.unwrap();
        assert_eq!(labels[LABEL_ONEOFF], "True");
        assert_eq!(labels[LABEL_SLUG], "abc");
        let host = out.host_config.unwrap();
        assert!(host.port_bindings.is_none() && host.restart_policy.is_none());
        let endpoints = out.networking_config.unwrap().endpoints_config.unwrap();
        assert_eq!(endpoints["p_default"].aliases, None);
    }
}
