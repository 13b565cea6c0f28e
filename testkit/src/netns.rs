//! A throwaway network namespace joined to this one by a veth pair with a private /30 (only
//! between the two veth ends, so traffic never leaves the machine), for "is X reachable from
//! another host" tests. Needs root and `ip` (iproute2). Removed on drop, also on panic.
use std::{
    net::{Ipv4Addr, SocketAddr, TcpStream},
    os::fd::AsRawFd,
    process::Command,
    time::Duration,
};

#[derive(Debug)]
pub struct NetNs {
    pub name: String,
    /// The veth end in this (the test's) namespace, and its address.
    pub host_if: String,
    pub host_addr: Ipv4Addr,
    /// The address of the veth end inside the namespace.
    pub ns_addr: Ipv4Addr,
}

#[derive(Debug, thiserror::Error)]
pub enum NetNsError {
    #[error("cannot run `ip` (install iproute2): {0}")]
    Spawn(#[source] std::io::Error),
    #[error("ip {args}: {stderr}")]
    Failed { args: String, stderr: String },
    #[error("no free /30 in 10.200.0.0/16")]
    NoFreeSubnet,
}

fn ip(args: &[&str]) -> Result<String, NetNsError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(NetNsError::Spawn)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetNsError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

impl NetNs {
    /// Creates the namespace, the veth pair and addresses in 10.200.0.0/16 that no interface
    /// of this machine uses yet.
    pub fn create() -> Result<Self, NetNsError> {
        let id = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let used: Vec<Ipv4Addr> = ip(&["-4", "-o", "addr", "show"])?
            .lines()
            .filter_map(|l| {
                let cidr = l.split_whitespace().skip_while(|w| *w != "inet").nth(1)?;
                cidr.split('/').next()?.parse().ok()
            })
            .collect();
        // A /30 of 10.200.0.0/16 (16384 of them) that no local address falls into.
        let seed = u32::from_str_radix(id, 16).unwrap_or(0);
        let base = (0..16384u32)
            .map(|i| (seed.wrapping_add(i) % 16384) * 4)
            .find(|&b| {
                !used.iter().any(|a| {
                    let o = a.octets();
                    o[..2] == [10, 200] && ((u32::from(o[2]) << 8) | u32::from(o[3])) & !3 == b
                })
            })
            .ok_or(NetNsError::NoFreeSubnet)?;
        let host_addr = Ipv4Addr::new(10, 200, (base >> 8) as u8, (base & 0xff) as u8 + 1);
        let ns_addr = Ipv4Addr::new(10, 200, (base >> 8) as u8, (base & 0xff) as u8 + 2);
        let ns = Self {
            name: format!("clawops-{id}"),
            host_if: format!("cwo{id}h"),
            host_addr,
            ns_addr,
        };
        let peer = format!("cwo{id}n");
        // From here on, Drop cleans up whatever was made.
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", &ns.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{host_addr}/30"),
            "dev",
            &ns.host_if,
        ])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &ns.name, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("{ns_addr}/30"), "dev", &peer])?;
        inside(&["link", "set", &peer, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Connects to `addr` from inside the namespace (on a thread that joins it, so nothing
    /// else in the process moves). Returns how the connection attempt ended.
    pub fn connect(&self, addr: SocketAddr, timeout: Duration) -> std::io::Result<()> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path)?;
            // SAFETY: setns on a valid namespace fd; it changes only this thread's namespace.
            if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            TcpStream::connect_timeout(&addr, timeout).map(drop)
        })
        .join()
        .expect("netns thread")
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the namespace destroys its veth end, which takes the pair with it.
        let _ = ip(&["netns", "delete", &self.name]);
        let _ = ip(&["link", "delete", &self.host_if]);
    }
}
