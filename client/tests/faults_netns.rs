//! The agent bound to 127.0.0.1 cannot be reached from another network namespace (another
//! "host" on a veth link), while from its own host it answers. A control listener on the
//! host's veth address proves the link itself works, so the refusal means something.
mod support;

use std::{
    io::ErrorKind,
    net::{SocketAddr, TcpListener},
    time::Duration,
};

use support::*;
use testkit::{agent::AgentProcess, netns::NetNs};

#[tokio::test(flavor = "multi_thread")]
async fn the_loopback_agent_is_unreachable_from_another_network_namespace() {
    let agent = AgentProcess::start("");
    let port = agent.addr.port();
    assert!(agent.addr.ip().is_loopback());
    let ns = NetNs::create().unwrap_or_else(|e| panic!("network namespace: {e}"));

    // The link works: a listener on the host's veth address is reachable from inside.
    let control = TcpListener::bind((ns.host_addr, 0)).unwrap();
    let control_addr = control.local_addr().unwrap();
    ns.connect(control_addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("the veth link does not work ({control_addr}): {e}"));

    // The agent's port on every address the other namespace could try.
    let attempts = [
        SocketAddr::from((ns.host_addr, port)),
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from((ns.ns_addr, port)),
    ];
    let mut outcomes = Vec::new();
    for addr in attempts {
        let err = ns
            .connect(addr, Duration::from_secs(3))
            .expect_err(&format!("{addr} reached the agent from another namespace"));
        assert!(
            matches!(
                err.kind(),
                ErrorKind::ConnectionRefused | ErrorKind::TimedOut | ErrorKind::HostUnreachable
            ),
            "{addr}: {err:?}"
        );
        outcomes.push(format!("{addr}: {:?}", err.kind()));
    }

    // From the agent's own host, loopback works, token and all.
    let mut client = connect(&agent).await;
    status(&mut client).await;
    drop(control);
    report(
        "agent on 127.0.0.1 reached from another network namespace (veth /30)",
        attempts.len(),
        &format!(
            "nothing: {}; control listener on the veth reachable; loopback call from the host works",
            outcomes.join(", ")
        ),
    );
}
